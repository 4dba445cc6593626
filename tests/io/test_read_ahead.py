"""Reading ahead: the disk reads a layer's bytes (every stored part of a quantised one) while the layer before is
probed, in long sequential requests; advice only, so it never changes a value or fails a read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import lineage.io.blocks as blocks_module
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.blocks import READ_AHEAD_PIECE, read_ahead
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors
from tests.quantise import quantised_folder


@pytest.fixture()
def advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every `posix_fadvise(WILLNEED)` call, as `(file name, start, length)`."""
    calls: list[tuple[str, int, int]] = []

    def record(fd: int, start: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_WILLNEED
        calls.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, start, length))

    monkeypatch.setattr(blocks_module.os, "posix_fadvise", record)
    return calls


def _covered(calls: list[tuple[str, int, int]], file: str) -> set[int]:
    return {b for f, start, length in calls if f == file for b in range(start, start + length)}


def test_near_ranges_are_read_as_one_and_long_ones_in_pieces(tmp_path: Path, advised: list) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"")
    far = 10 * READ_AHEAD_PIECE
    read_ahead(path, [(far, far + 5), (100, 200), (0, 10), (far + 100, far + 2 * READ_AHEAD_PIECE + 7)])
    # 0-200 is one range (a gap under READ_AHEAD_GAP); the far one is one range of 2 pieces and 7 bytes: 3 calls.
    assert advised == [
        ("w.bin", 0, 200),
        ("w.bin", far, READ_AHEAD_PIECE),
        ("w.bin", far + READ_AHEAD_PIECE, READ_AHEAD_PIECE),
        ("w.bin", far + 2 * READ_AHEAD_PIECE, 7),
    ]


def test_a_file_that_cannot_be_opened_is_left_to_the_reads(tmp_path: Path, advised: list) -> None:
    read_ahead(tmp_path / "gone.safetensors", [(0, 100)])
    assert advised == []


@pytest.fixture(scope="module")
def gptq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantised_folder(tmp_path_factory.mktemp("gptq"), tiny_llama_tensors(0), TINY_LLAMA_CONFIG, "gptq")


def test_a_quantised_weight_reads_ahead_every_stored_part(gptq: Path, advised: list) -> None:
    name = "model.layers.1.mlp.up_proj.weight"
    with open_checkpoint(gptq) as ckpt:
        ckpt.prefetch([name, "no.such.tensor"])
        parts = [ckpt._stored[p] for p in ckpt._quant.weights[name][1].parts.values()]
    assert {p.name.rsplit(".", 1)[1] for p in parts} >= {"qweight", "qzeros", "scales"}
    for part in parts:
        assert set(range(part.start, part.end)) <= _covered(advised, part.file), part.name


def test_the_fingerprint_reads_each_layer_ahead_of_probing_it(gptq: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage.io.reader import CheckpointReader

    events: list[tuple[str, str]] = []
    prefetch, row_blocks = CheckpointReader.prefetch, CheckpointReader.row_blocks

    def on_prefetch(self, names):  # noqa: ANN001, ANN202
        names = list(names)
        events.extend(("ahead", n) for n in names)
        return prefetch(self, names)

    def on_read(self, name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        events.append(("read", name))
        return row_blocks(self, name, *args, **kwargs)

    monkeypatch.setattr(CheckpointReader, "prefetch", on_prefetch)
    monkeypatch.setattr(CheckpointReader, "row_blocks", on_read)
    fingerprint_model(gptq, FingerprintOptions(device="cpu"))
    reads = [i for i, (kind, name) in enumerate(events) if kind == "read" and ".layers." in name]
    assert reads
    for i in reads:
        name = events[i][1]
        layer = int(name.split(".layers.")[1].split(".")[0])
        assert ("ahead", name) in events[:i], name
        if layer > 0:  # layer N was asked for while layer N-1 was still to be read (ahead, not just before)
            first_ahead = events.index(("ahead", name))
            assert any(e == "read" and f".layers.{layer - 1}." in n for e, n in events[first_ahead:i]), name


def test_reading_ahead_changes_no_value(gptq: Path) -> None:
    with open_checkpoint(gptq) as ckpt:
        before = ckpt.tensor("model.layers.0.self_attn.q_proj.weight")
        ckpt.prefetch(ckpt.names())
        assert torch.equal(ckpt.tensor("model.layers.0.self_attn.q_proj.weight"), before)


def test_a_view_reads_its_stored_tensor_ahead(gptq: Path, advised: list) -> None:
    from lineage.arch.views import View
    from lineage.io.views import ViewedCheckpoint

    stored = "model.layers.0.self_attn.o_proj.weight"
    with open_checkpoint(gptq) as ckpt:
        viewed = ViewedCheckpoint(ckpt, {"o.transposed": View(stored, transpose=True)})
        viewed.prefetch(["o.transposed"])
        parts = [ckpt._stored[p] for p in ckpt._quant.weights[stored][1].parts.values()]
    for part in parts:
        assert set(range(part.start, part.end)) <= _covered(advised, part.file), part.name
