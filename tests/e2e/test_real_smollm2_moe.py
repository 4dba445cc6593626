"""A mixture of experts sparse-upcycled from the real SmolLM2-135M is derived from it; one of the same shape
trained from a random initialisation is not.

The upcycle follows Komatsuzaki et al. (ICLR 2023) and the Qwen2 report (arXiv 2407.10671, section 2.2): 4
Mixtral-style experts, each SmolLM2's FFN shuffled along its units, two of them with half their units drawn
afresh, a new router, attention and embeddings carried over; then a brief training of the whole MoE.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.obtain import obtain_fingerprint
from tests.real import smollm2_folder

pytestmark = pytest.mark.slow
EXPERTS = 4


def _mixtral_config(base: Path):  # noqa: ANN202 - a MixtralConfig
    from transformers import AutoConfig, MixtralConfig

    dense = AutoConfig.from_pretrained(base).to_dict()
    keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id",
            "pad_token_id", "max_position_embeddings")  # fmt: skip
    head_dim = dense["hidden_size"] // dense["num_attention_heads"]
    sizes = {k: dense[k] for k in keep if k in dense}
    return MixtralConfig(**sizes, num_local_experts=EXPERTS, num_experts_per_tok=2, head_dim=head_dim)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = smollm2_folder()
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, MixtralForCausalLM

    from lineage.catalog.text import mixture_text
    from lineage.catalog.train import TrainConfig, train_lm

    root = tmp_path_factory.mktemp("real-moe")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    dense = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    config = _mixtral_config(base)
    g = torch.Generator().manual_seed(3)
    state = {k: v for k, v in dense.items() if ".mlp." not in k}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        gate, up, down = (dense[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
        state[p + "mlp.gate.weight"] = 0.02 * torch.randn(EXPERTS, gate.shape[1], generator=g)
        gate_up, downs = [], []
        for e in range(EXPERTS):
            perm = torch.randperm(gate.shape[0], generator=g)
            w1, w3, w2 = gate[perm].clone(), up[perm].clone(), down[:, perm].clone()
            if e >= 2:
                fresh = torch.randperm(gate.shape[0], generator=g)[: gate.shape[0] // 2]
                w1[fresh] = gate.std() * torch.randn(len(fresh), w1.shape[1], generator=g)
                w3[fresh] = up.std() * torch.randn(len(fresh), w3.shape[1], generator=g)
                w2[:, fresh] = down.std() * torch.randn(w2.shape[0], len(fresh), generator=g)
            gate_up.append(torch.cat([w1, w3]))
            downs.append(w2)
        # transformers 5 holds a Mixtral's experts stacked in memory ([E, 2I, H] gate then up; [E, H, I]) and
        # saves them per expert (`block_sparse_moe.experts.E.w1`...), the layout the hub publishes.
        state[p + "mlp.experts.gate_up_proj"] = torch.stack(gate_up)
        state[p + "mlp.experts.down_proj"] = torch.stack(downs)
    out = {"base": base}
    for name, init in (("upcycled", state), ("moe-from-scratch", None)):
        torch.manual_seed(11)
        model = MixtralForCausalLM(config)
        if init is not None:
            missing, unexpected = model.load_state_dict(init, strict=False)
            assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
        lr = 2e-5 if init is not None else 1e-3
        train_lm(model, ids, TrainConfig(steps=3, lr=lr, batch_size=2, seq_len=64, seed=0, warmup=0))
        model.to(torch.bfloat16).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def verdicts(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from lineage.fingerprint.cache import FingerprintCache

    cache = FingerprintCache(tmp_path_factory.mktemp("real-moe-cache"))
    fps = {k: obtain_fingerprint(p, cache=cache, name=k)[0] for k, p in models.items()}
    clf = FamilyClassifier().fit([fps["base"]], ["smollm2"], ["SmolLM2-135M-Instruct"])
    return dict(zip(("upcycled", "moe-from-scratch"), clf.predict([fps["upcycled"], fps["moe-from-scratch"]])))


def test_an_moe_upcycled_from_smollm2_is_derived_from_it(verdicts):
    v = verdicts["upcycled"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.log10_p < -20, v.rule


def test_an_moe_of_the_same_shape_from_a_random_initialisation_is_not(verdicts):
    v = verdicts["moe-from-scratch"]
    assert v.verdict != "derived" and v.derived_from is None, v.rule
