"""A quantised copy is told from a fine-tune: its own rounding explains its distance from the source.

On seed 1's tiny Llama (the limits of `lineage.compare.quantised` were chosen on seed 0): a GPTQ, NF4 or FP8 copy
of the bf16 source is a `quantised copy`; the source fine-tuned first (the tests' stand-in: a Gaussian change of
std 0.01 on weights of scale 0.1; 0.02 for GPTQ, whose limit allows for its error compensation) and then
quantised is derived but not a quantised copy; a bf16 fine-tune is derived with no quantisation to weigh. The
rounding noise each reader reports is checked against the error the rounding really left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lineage.compare.quantised import quantised_fit
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.format import fingerprint_bytes, fingerprint_from_bytes
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.quant.base import cell_variances
from lineage.verify.outcome import _weights_say, weights_view
from tests.checkpoints import tiny_llama_tensors, write_checkpoint
from tests.io.test_quant_models import CONFIG
from tests.quantise import FORMATS, quantised_folder

CPU = FingerprintOptions(device="cpu")
SEED = 1
FINE_TUNE = {"gptq": 0.02, "nf4": 0.01, "fp8": 0.01, "mxfp4": 0.01}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], FamilyClassifier]:
    tensors = {k: v.to(torch.bfloat16).float() for k, v in tiny_llama_tensors(SEED, config=CONFIG).items()}
    folder = write_checkpoint(tmp_path_factory.mktemp("source"), tensors, CONFIG)
    return tensors, FamilyClassifier().fit([fingerprint_model(folder, CPU)], ["tiny"], ["tiny-bf16"])


def _fine_tune(tensors: dict[str, torch.Tensor], std: float) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(SEED + 100)
    return {k: v + std * torch.randn(v.shape, generator=gen) for k, v in tensors.items()}


@pytest.mark.parametrize("fmt", ["gptq", "nf4", "fp8"])
def test_a_quantised_copy_says_so(fmt: str, source: tuple, tmp_path: Path) -> None:
    tensors, classifier = source
    (v,) = classifier.predict([fingerprint_model(quantised_folder(tmp_path, tensors, CONFIG, fmt), CPU)])
    assert (v.verdict, v.relation) == ("derived", "quantised copy"), v.rule
    assert "quantised copy" in v.rule and "quantised copy" in v.words()
    q = v.evidence["quantisation"]
    assert 0.8 < q["ratio"] <= q["limit"], q
    assert _weights_say(weights_view(v)).startswith("the weights are a quantised copy of tiny-bf16")


@pytest.mark.parametrize("fmt", list(FINE_TUNE))
def test_a_fine_tune_then_quantised_is_no_quantised_copy(fmt: str, source: tuple, tmp_path: Path) -> None:
    tensors, classifier = source
    folder = quantised_folder(tmp_path, _fine_tune(tensors, FINE_TUNE[fmt]), CONFIG, fmt)
    (v,) = classifier.predict([fingerprint_model(folder, CPU)])
    assert (v.verdict, v.derived_from, v.relation) == ("derived", "tiny-bf16", None), v.rule
    assert "more than a quantised copy" in v.rule and v.to_dict()["relation"] is None
    q = v.evidence["quantisation"]
    assert q["ratio"] > q["limit"] and q["quantised_copy"] is False, q
    assert _weights_say(weights_view(v)).startswith("the weights derive from tiny-bf16")


def test_a_bf16_fine_tune_is_no_quantised_copy(source: tuple, tmp_path: Path) -> None:
    tensors, classifier = source
    folder = write_checkpoint(tmp_path, {k: v.to(torch.bfloat16) for k, v in _fine_tune(tensors, 0.01).items()},
                              CONFIG)  # fmt: skip
    fp = fingerprint_model(folder, CPU)
    (v,) = classifier.predict([fp])
    assert (v.verdict, v.relation) == ("derived", None) and "quantis" not in v.rule, v.rule
    assert fp.quant_noise == {} and "quantisation" not in v.evidence and quantised_fit(fp, fp) is None
    assert b"quant_noise" not in fingerprint_bytes(fp)  # an unquantised fingerprint's file is as it was


def test_a_copy_with_a_layer_of_its_own_is_no_quantised_copy(source: tuple, tmp_path: Path) -> None:
    tensors, classifier = source
    changed = dict(tensors)
    name = "model.layers.1.mlp.down_proj.weight"
    changed[name] = changed[name].flip(0)  # one matrix replaced: rounding explains nothing there
    (v,) = classifier.predict([fingerprint_model(quantised_folder(tmp_path, changed, CONFIG, "fp8"), CPU)])
    assert v.verdict == "derived" and v.relation is None, v.rule


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_rounding_noise_a_reader_reports_is_the_rounding_error(fmt: str, tmp_path: Path) -> None:
    """Per row, the expected squared error the reader reports is the error the rounding left, to sampling."""
    if fmt.startswith("ct-"):
        pytest.importorskip("compressed_tensors")
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(SEED)) * 0.05
    tensors = {"model.layers.0.mlp.up_proj.weight": w}
    folder = quantised_folder(tmp_path, tensors, {"model_type": "llama"}, fmt)
    with open_checkpoint(folder) as ckpt:
        name = next(iter(tensors))
        noise = ckpt.quantisation_noise(name)
        error = (ckpt.tensor(name).double() - w.double()).square().sum(1)
    assert noise.shape == (256,) and noise.dtype == torch.float64
    assert 0.85 < float(error.sum() / noise.sum()) < 1.15, float(error.sum() / noise.sum())
    assert float(torch.corrcoef(torch.stack([noise, error]))[0, 1]) > 0.5  # row by row, not only in total


def test_cell_variances() -> None:
    code = torch.tensor([0.0, -1.0, 1.0, 3.0, -0.0, float("nan")])
    # Cells: -1 mirrors [-1.5, -0.5]; 0 is [-0.5, 0.5] for +0 and -0; 1 is [0.5, 2]; 3 mirrors [2, 4].
    want = torch.tensor([1.0, 1.0, 1.5**2, 2.0**2, 1.0, 0.0], dtype=torch.float64) / 12
    assert torch.equal(cell_variances(code), want)


def test_the_noise_survives_the_fingerprint_file(source: tuple, tmp_path: Path) -> None:
    tensors, _ = source
    fp = fingerprint_model(quantised_folder(tmp_path, tensors, CONFIG, "nf4"), CPU)
    assert set(fp.quant_noise) == set(fp.responses) and all(v > 0 for v in fp.quant_noise.values())
    assert fingerprint_from_bytes(fingerprint_bytes(fp)).quant_noise == fp.quant_noise
