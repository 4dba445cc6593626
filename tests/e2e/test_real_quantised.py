"""Quantised copies of a real SmolLM2-135M fine-tune, as hub checkpoints store them, are derived from SmolLM2.

The fine-tune is the real model trained for four steps (as in `test_real_smollm2`); its decoder projections are
then written as GPTQ 4-bit (act-order, groups of 128: 576 inputs end in a partial group), AWQ GEMM 4-bit (groups of
64), FP8 with 128 x 128 block scales (partial blocks at every edge of 576) and bitsandbytes NF4 with nested absmax,
the embedding left in bf16 as these exports leave it. Each copy must be `derived` from SmolLM2-135M-Instruct at
p < 1e-20, with the fine-tune's own parameter count.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.obtain import obtain_fingerprint
from tests.quantise import quantised_folder
from tests.real import smollm2_folder

pytestmark = pytest.mark.slow
COPIES = {"gptq": 128, "awq": 64, "fp8": 128, "nf4": 64}


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = smollm2_folder()
    pytest.importorskip("transformers")
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lineage.catalog.text import mixture_text
    from lineage.catalog.train import TrainConfig, train_lm

    root = tmp_path_factory.mktemp("real-quantised")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    train_lm(model, ids, TrainConfig(steps=4, lr=2e-5, batch_size=2, seq_len=64, seed=0, warmup=0))
    model.save_pretrained(root / "finetune", safe_serialization=True)
    tensors = load_file(str(root / "finetune" / "model.safetensors"))
    config = {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    out = {"base": base}
    for fmt, group in COPIES.items():
        folder = quantised_folder(root / f"smollm2-ft-{fmt}", tensors, config, fmt, group)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(base / name, folder / name)
        out[fmt] = folder
    return out


@pytest.fixture(scope="module")
def verdicts(copies: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from lineage.fingerprint.cache import FingerprintCache

    cache = FingerprintCache(tmp_path_factory.mktemp("real-quantised-cache"))
    fps = {k: obtain_fingerprint(p, cache=cache, name=k)[0] for k, p in copies.items()}
    clf = FamilyClassifier().fit([fps["base"]], ["smollm2"], ["SmolLM2-135M-Instruct"])
    names = list(COPIES)
    assert all(fps[n].summary.num_parameters == fps["base"].summary.num_parameters for n in names)
    return dict(zip(names, clf.predict([fps[n] for n in names])))


@pytest.mark.parametrize("fmt", list(COPIES))
def test_a_quantised_copy_of_the_real_fine_tune_is_derived(verdicts: dict, fmt: str) -> None:
    v = verdicts[fmt]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.log10_p < -20, v.rule


@pytest.mark.parametrize("fmt", list(COPIES))
def test_the_real_copies_weigh_their_residual_against_their_rounding(verdicts: dict, fmt: str) -> None:
    """The 4-step fine-tune changed the weights far less than 4-bit rounding does: its copies' residual against
    SmolLM2 is what their rounding explains, and the verdict says quantised copy (README, Limits)."""
    q = verdicts[fmt].evidence["quantisation"]
    print(f"{fmt}: sqrt(observed / expected) = {q['ratio']:.3f} (limit {q['limit']:g})")
    assert q["ratio"] is not None and q["tensors"] == 30 * 7, q
