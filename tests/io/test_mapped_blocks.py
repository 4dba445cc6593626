"""Row blocks are mapped from the file one block at a time: the same values as a read, never a crash."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lineage.io.blocks as blocks_module
from lineage.errors import CheckpointError
from lineage.io import open_checkpoint
from lineage.io.blocks import map_rows, open_weights, pread_tensor, torch_dtype


@pytest.fixture()
def odd(tmp_path: Path) -> Path:
    """A file whose tensors start at offsets that are no multiple of a page, in three float dtypes."""
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a": torch.randn(3, 5, generator=gen),  # 60 bytes first: every later tensor starts mid-page
        "b": torch.randn(700, 37, generator=gen).to(torch.bfloat16),
        "c": torch.randn(301, 129, generator=gen).to(torch.float16),
        "d": torch.randn(257, 1031, generator=gen),
    }
    save_file(tensors, tmp_path / "model.safetensors")
    return tmp_path


@pytest.mark.parametrize("name", ["b", "c", "d"])
@pytest.mark.parametrize("rows", [(0, 1), (0, 257), (5, 200), (199, 257)])
def test_a_mapped_block_holds_what_a_read_of_it_holds(odd: Path, name: str, rows: tuple[int, int]) -> None:
    with open_checkpoint(odd) as ckpt:
        info = ckpt.info(name)
    path = odd / info.file
    assert info.start % mmap.ALLOCATIONGRANULARITY != 0
    fd = open_weights(path)
    try:
        dtype = torch_dtype(path, info)
        mapped = map_rows(path, info, dtype, rows, fd)
        assert torch.equal(mapped, pread_tensor(path, info, dtype, rows, fd=fd))
        assert mapped.shape == (rows[1] - rows[0], info.shape[1]) and mapped.dtype == dtype
    finally:
        os.close(fd)


def test_row_blocks_stream_every_row_in_order(odd: Path) -> None:
    with open_checkpoint(odd) as ckpt:
        expected = ckpt.tensor("d")
        got = [(start, block.clone()) for start, block in ckpt.row_blocks("d", 10_000)]
    assert [s for s, _ in got] == list(range(0, 257, 2))  # 10 KB of 4 KB rows: two rows a block
    assert torch.equal(torch.cat([b for _, b in got]), expected)


def test_a_write_to_a_mapped_block_never_reaches_the_file(odd: Path) -> None:
    path = odd / "model.safetensors"
    before = path.read_bytes()
    with open_checkpoint(odd) as ckpt:
        info = ckpt.info("d")
    fd = open_weights(path)
    try:
        block = map_rows(path, info, torch.float32, (0, 4), fd)
        block.fill_(7.0)
        assert bool((block == 7.0).all())
    finally:
        os.close(fd)
    assert path.read_bytes() == before


def test_a_file_truncated_after_it_was_opened_is_refused_in_one_line_not_a_crash(odd: Path) -> None:
    # Touching a mapped page past the end of a file kills the process (SIGBUS): the length is checked first.
    with open_checkpoint(odd) as ckpt:
        info = ckpt.info("d")
        path = odd / info.file
        os.truncate(path, info.start + 100 * 1031 * 4)
        with pytest.raises(CheckpointError, match="truncated file") as err:
            list(ckpt.row_blocks("d", 40_000))
    assert "model.safetensors" in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_cannot_be_mapped_is_read_instead(odd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(19, "No such device")  # what mmap says on a file system without it

    with open_checkpoint(odd) as ckpt:
        expected = ckpt.tensor("b")
        monkeypatch.setattr(blocks_module.mmap, "mmap", refuse)
        got = torch.cat([block.clone() for _, block in ckpt.row_blocks("b", 1_000)])
    assert torch.equal(got.float(), expected)
