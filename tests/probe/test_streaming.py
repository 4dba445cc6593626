"""The streaming engine: a weight read in blocks of any size, in its stored dtype, gives the same fingerprint.

The engine reads small blocks into reused buffers and converts them where it computes (`lineage.probe.engine`);
these tests pin that none of that changes a number: the block size, the stored dtype and the order of the
accumulations move nothing beyond the float32 rounding the pinned test allows.
"""

from __future__ import annotations

import pytest
import torch

import lineage.fingerprint.pipeline as pipeline
import lineage.probe.engine as engine
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io.open import open_checkpoint
from lineage.probe.profiles import ProfileReader, Profiles
from tests.probe.test_pinned_numbers import OPTIONS, assert_same_numbers, pinned_model  # noqa: F401 - fixture

CPU = FingerprintOptions(device="cpu")


def _with_blocks(monkeypatch: pytest.MonkeyPatch, nbytes: int) -> None:
    monkeypatch.setattr(pipeline, "block_bytes", lambda device: nbytes)


def test_block_size_changes_no_number(pinned_model, monkeypatch):  # noqa: F811 - the fixture
    default = fingerprint_model(pinned_model, OPTIONS)
    _with_blocks(monkeypatch, 3000)  # a row or two per block: hundreds of blocks per matrix
    assert_same_numbers(fingerprint_model(pinned_model, OPTIONS), default)
    _with_blocks(monkeypatch, 1 << 30)  # every matrix in one block
    assert_same_numbers(fingerprint_model(pinned_model, OPTIONS), default)


def test_block_size_changes_no_number_in_any_layout(hf_models, monkeypatch):
    # Fused QKV and gate_up (Phi-3), interleaved QKV (GPT-NeoX), biases (Qwen2), norms (Gemma): each gathers
    # its unit profiles from other rows or columns of its blocks.
    for arch, folder in hf_models.items():
        monkeypatch.undo()
        default = fingerprint_model(folder, CPU)
        _with_blocks(monkeypatch, 700)
        try:
            assert_same_numbers(fingerprint_model(folder, CPU), default)
        except AssertionError as exc:
            raise AssertionError(f"{arch}: {exc}") from exc


def test_padding_the_probe_columns_changes_no_number(pinned_model, monkeypatch):  # noqa: F811 - the fixture
    # The engine pads each product's probe columns to whole kernel tiles; the adversarial starts and the
    # fixed probes are found by position, so a slice that took in a padded column would move the statistics.
    default = fingerprint_model(pinned_model, OPTIONS)
    monkeypatch.setattr(engine, "_padded_width", lambda k, multiple=16: k)
    assert_same_numbers(fingerprint_model(pinned_model, OPTIONS), default)


def test_blocks_come_in_the_stored_dtype_and_cover_the_tensor(pinned_model):  # noqa: F811 - the fixture
    with open_checkpoint(pinned_model) as ckpt:
        name = "model.layers.0.mlp.up_proj.weight"
        whole = ckpt.tensor(name)
        blocks = list((start, block.clone()) for start, block in ckpt.row_blocks(name, 5000, dtype=None))
        assert {b.dtype for _, b in blocks} == {torch.bfloat16}
        assert len(blocks) > 10 and [s for s, _ in blocks] == sorted(s for s, _ in blocks)
        assert torch.equal(torch.cat([b for _, b in blocks]).float(), whole)


@pytest.mark.parametrize("side", ["in", "out"])
@pytest.mark.parametrize("sampled", [True, False])
def test_profiles_equal_the_dense_products(side: str, sampled: bool):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 30, generator=g)
    units = torch.tensor([0, 3, 4, 17, 29] + ([41, 49] if side == "in" else [])) if sampled else None
    vectors = torch.randn(6, 30 if side == "in" else 50, generator=g)
    if side == "in" and not sampled:
        with pytest.raises(ValueError, match="main product"):
            ProfileReader(Profiles(vectors, side, units), tuple(w.shape))
        return
    reader = ProfileReader(Profiles(vectors, side, units), tuple(w.shape))
    for start in range(0, 50, 7):  # blocks of 7 rows: some hold no sampled unit
        reader.block(slice(start, min(50, start + 7)), w[start : start + 7])
    dense = vectors @ w.T if side == "in" else vectors @ w
    want = dense if units is None else dense[:, units]
    torch.testing.assert_close(reader.result(), want, rtol=1e-5, atol=1e-5)
