"""A quantised copy of a tiny model, in every format lineage reads, is `derived` from its bf16 source; a LoRA
over a quantised base (QLoRA) reads as the dequantised base plus the merged delta, and is derived too.

The source is a tiny Llama (hidden 64, 2 layers) stored in bf16, its embedding and head left unquantised as
GPTQ/AWQ/FP8/bitsandbytes exports leave them; each copy quantises every decoder projection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.open import open_adapter
from tests.checkpoints import tiny_llama_tensors, write_checkpoint
from tests.quantise import FORMATS, quantised_folder

CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
          "rms_norm_eps": 1e-6, "tie_word_embeddings": True}  # fmt: skip
CPU = FingerprintOptions(device="cpu")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    tensors = {k: v.to(torch.bfloat16) for k, v in tiny_llama_tensors(0, config=CONFIG).items()}
    return tensors, write_checkpoint(tmp_path_factory.mktemp("source"), tensors, CONFIG)


@pytest.fixture(scope="module")
def classifier(source: tuple[dict, Path]) -> FamilyClassifier:
    return FamilyClassifier().fit([fingerprint_model(source[1], CPU)], ["tiny"], ["tiny-bf16"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_quantised_copy_is_derived_from_its_source(
    fmt: str, source: tuple[dict, Path], classifier: FamilyClassifier, tmp_path: Path
) -> None:
    if fmt.startswith("ct-"):
        pytest.importorskip("compressed_tensors")
    tensors, _ = source
    folder = quantised_folder(tmp_path / fmt, {k: v.float() for k, v in tensors.items()}, CONFIG, fmt)
    with open_checkpoint(folder) as ckpt:
        assert sorted(ckpt.names()) == sorted(tensors)  # the same names as the source: the parts are hidden
        assert any(d not in ("BF16", "F32") for d in ckpt.dtypes), ckpt.dtypes
    fp = fingerprint_model(folder, CPU)
    assert fp.summary.num_parameters == sum(v.numel() for v in tensors.values())
    (verdict,) = classifier.predict([fp])
    assert (verdict.verdict, verdict.derived_from) == ("derived", "tiny-bf16"), verdict.rule
    assert verdict.log10_p < -20, verdict.rule
    # Its own rounding explains every difference from the source: a quantised copy, in the rule and the JSON.
    assert verdict.relation == "quantised copy" and verdict.rule.startswith("derived, quantised copy"), verdict.rule
    assert verdict.to_dict()["relation"] == "quantised copy"
    assert verdict.evidence["quantisation"]["quantised_copy"] is True


def _lora(folder: Path, base: Path, tensors: dict[str, torch.Tensor]) -> tuple[Path, dict[str, torch.Tensor]]:
    """A hand-written PEFT LoRA (r 4, alpha 8) on q_proj and down_proj of every layer; returns its deltas."""
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "down_proj"],
              "base_model_name_or_path": str(base)}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config))
    gen = torch.Generator().manual_seed(3)
    weights, deltas = {}, {}
    for name, w in tensors.items():
        if name.endswith(("q_proj.weight", "down_proj.weight")):
            a, b = torch.randn(4, w.shape[1], generator=gen) * 0.05, torch.randn(w.shape[0], 4, generator=gen) * 0.05
            module = "base_model.model." + name.removesuffix(".weight")
            weights |= {module + ".lora_A.weight": a, module + ".lora_B.weight": b}
            deltas[name] = 2.0 * b @ a
    save_file(weights, str(folder / "adapter_model.safetensors"))
    return folder, deltas


@pytest.mark.parametrize("fmt", ["gptq", "nf4"])
def test_a_lora_over_a_quantised_base(
    fmt: str, source: tuple[dict, Path], classifier: FamilyClassifier, tmp_path: Path
) -> None:
    tensors, _ = source
    base = quantised_folder(tmp_path / fmt, {k: v.float() for k, v in tensors.items()}, CONFIG, fmt)
    adapter, deltas = _lora(tmp_path / "lora", base, tensors)
    with open_checkpoint(base) as plain, open_adapter(adapter, base) as merged:
        for name in tensors:
            want = plain.tensor(name) + deltas.get(name, 0)
            assert torch.allclose(merged.tensor(name), want, atol=1e-6), name
            blocks = torch.cat([b.clone() for _, b in merged.row_blocks(name, 1024)])
            assert torch.allclose(blocks, want, atol=1e-6), name
    (verdict,) = classifier.predict([fingerprint_model(adapter, CPU)])
    assert (verdict.verdict, verdict.derived_from) == ("derived", "tiny-bf16"), verdict.rule
