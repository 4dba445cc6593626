"""gpt-oss's stacked MXFP4 experts: read one expert at a time, equal to transformers' converter bit for bit, and a
tiny gpt-oss MXFP4 copy is a quantised copy of its bf16 source.

The model is transformers' own gpt_oss (`AutoConfig.for_model`, hidden 64, 2 layers, 4 experts, gate and up
interleaved), saved in bf16; its copy stores every expert stack as gpt-oss's checkpoints do
(`mlp.experts.gate_up_proj_blocks` [E, 2 * ffn, hidden / 32, 16], `..._scales` [E, 2 * ffn, hidden / 32], each
expert's [out, in] matrix packed by `tests.quantise.mxfp4_pack`), attention and router left in bf16.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from tests.checkpoints import write_checkpoint
from tests.quantise import mxfp4_pack

pytest.importorskip("transformers")
CPU = FingerprintOptions(device="cpu")
STACKS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def _mxfp4_copy(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    out = {}
    for name, t in tensors.items():
        if name.endswith(STACKS):
            packed = [mxfp4_pack(t[e].float().T.contiguous()) for e in range(t.shape[0])]  # [in, out] stored
            out[name + "_blocks"] = torch.stack([p["weight_blocks"] for p in packed])
            out[name + "_scales"] = torch.stack([p["weight_scales"] for p in packed])
        else:
            out[name] = t
    qc = {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                              "model.embed_tokens", "lm_head"]}  # fmt: skip
    return write_checkpoint(folder, out, {**config, "quantization_config": qc})


TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, tie_word_embeddings=False,
            pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gpt_oss", **TINY)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained model's gains and biases are not their init values
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    tensors = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    root = tmp_path_factory.mktemp("gpt-oss")
    plain = {k: v for k, v in config.to_dict().items() if k != "quantization_config"}
    source = write_checkpoint(root / "bf16", tensors, plain)
    return source, _mxfp4_copy(root / "mxfp4", tensors, plain), tensors


def test_stacked_experts_equal_transformers_converter(models: tuple) -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    _, copy, tensors = models
    from safetensors.torch import load_file

    stored = load_file(copy / "model.safetensors")
    name = "model.layers.1.mlp.experts.gate_up_proj"
    with open_checkpoint(copy) as ckpt:
        assert ckpt.info(name).shape == tensors[name].shape and ckpt.info(name).dtype == "MXFP4"
        assert name + "_blocks" not in ckpt.names()  # the parts are hidden behind the bf16 layout's name
        ours = ckpt.tensor(name)
        want = convert_moe_packed_tensors(stored[name + "_blocks"], stored[name + "_scales"], dtype=torch.float32)
        assert torch.equal(ours, want)  # bit for bit, [E, in, out]
        assert torch.equal(ckpt.rows(name, [2, 0]), want[[2, 0]])
        assert torch.equal(torch.cat([b for _, b in ckpt.row_blocks(name, 1)]), want)
        # The dequantised experts are the bf16 ones up to MXFP4's rounding.
        assert float((ours - tensors[name].float()).norm() / tensors[name].float().norm()) < 0.15


def test_one_expert_is_read_from_its_own_bytes(models: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    import lineage.io.reader as reader_module

    _, copy, _ = models
    calls = []
    real = reader_module.pread_tensor

    def spy(path, info, dtype, rows=None, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append((info.name, rows))
        return real(path, info, dtype, rows, *args, **kwargs)

    monkeypatch.setattr(reader_module, "pread_tensor", spy)
    name = "model.layers.0.mlp.experts.down_proj"
    with open_checkpoint(copy) as ckpt:
        ckpt.rows(name, [3])
        noise = ckpt.quantisation_noise(name, 3)
    assert {c for c in calls if c[0].startswith(name)} == {(name + "_blocks", (3, 4)), (name + "_scales", (3, 4))}
    assert noise.shape == (64,) and bool((noise > 0).all())  # expert 3's per output (hidden 64)


def test_a_gpt_oss_mxfp4_copy_is_a_quantised_copy_of_its_bf16_source(models: tuple) -> None:
    source, copy, _ = models
    clf = FamilyClassifier().fit([fingerprint_model(source, CPU)], ["gpt-oss"], ["tiny-gpt-oss"])
    fp = fingerprint_model(copy, CPU)
    assert any(k.startswith("layers.") and "expert" in k for k in fp.quant_noise), sorted(fp.quant_noise)
    (v,) = clf.predict([fp])
    assert (v.verdict, v.derived_from) == ("derived", "tiny-gpt-oss"), v.rule
    assert v.log10_p < -10 and v.relation == "quantised copy", v.rule  # hidden 64, 2 layers: p about 1e-14
