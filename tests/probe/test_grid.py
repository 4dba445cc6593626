"""The quantisation grid a dequantised copy keeps (`lineage.fingerprint.grid`), and the fingerprint field."""

from __future__ import annotations

import pytest
import torch

from lineage.catalog.operations import quantize_groupwise
from lineage.fingerprint import load_fingerprint, save_fingerprint
from lineage.fingerprint.grid import TENSORS, grid_bits
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _weights(cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(64, cols, generator=torch.Generator().manual_seed(seed)) * 0.02


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cols", [64, 176, 1000])
def test_trained_weights_lie_on_no_grid(cols: int, dtype: torch.dtype) -> None:
    w = _weights(cols)
    assert grid_bits(w.to(dtype).float().numpy()) is None
    pruned = w.clone()
    pruned[pruned.abs() < pruned.abs().median()] = 0  # half the entries exact zeros: on every grid, so left out
    assert grid_bits(pruned.to(dtype).float().numpy()) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group", [32, 128, 0])
def test_a_round_trip_keeps_its_grid_in_any_stored_dtype(bits: int, group: int, dtype: torch.dtype) -> None:
    w = _weights(1000, seed=bits + group)
    q = quantize_groupwise(w, bits=bits, group_size=group or w.shape[1])  # 0: one group per row (LLM.int8)
    assert grid_bits(q.to(dtype).float().numpy()) == bits


def test_asymmetric_min_max_grids_are_found() -> None:
    w = _weights(256, seed=5).view(-1, 64)
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    step = (hi - lo) / 15
    q = (torch.round((w - lo) / step) * step + lo).view(64, 256)  # 4-bit, zero point, groups of 64 (AWQ-like)
    assert grid_bits(q.numpy()) == 4
    assert grid_bits(w.view(64, 256).numpy()) is None


def test_the_fingerprint_records_the_grid_of_a_dequantised_copy(tmp_path) -> None:  # noqa: ANN001
    base = tiny_llama_tensors(seed=4)
    copy = {k: quantize_groupwise(v, bits=8, group_size=32) if ".layers." in k and v.dim() == 2 else v
            for k, v in base.items()}  # fmt: skip
    options = FingerprintOptions(device="cpu")
    fp_base = fingerprint_model(write_checkpoint(tmp_path / "base", base), options)
    fp_copy = fingerprint_model(write_checkpoint(tmp_path / "copy", copy), options)
    assert fp_base.quant_grid == {}
    assert set(fp_copy.quant_grid) <= set(fp_copy.responses)
    assert len(fp_copy.quant_grid) == min(TENSORS, len(fp_copy.responses))  # the decoder matrices looked at
    assert set(fp_copy.quant_grid.values()) == {8}
    saved = save_fingerprint(fp_copy, tmp_path / "copy.fingerprint.safetensors")
    assert load_fingerprint(saved).quant_grid == fp_copy.quant_grid
