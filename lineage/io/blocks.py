"""Reading tensor bytes: positioned reads into reusable buffers, mapped row blocks, dtype lookup, the NaN/Inf
check.

Kept apart from `reader.py` (which decides *what* to read) because this is *how* bytes become tensors.
Whole tensors are read with positioned reads into fresh or reusable buffers, never mapped: pages of tensors
already probed never count in the process's resident memory. Row blocks streamed to the engine are mapped,
one block at a time (`map_rows`), so the float32 conversion reads the page cache itself instead of a copy
of it.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import torch

from lineage.errors import CheckpointError, NonFiniteWeightsError
from lineage.io.constants import TORCH_DTYPE_NAMES
from lineage.io.header import TensorInfo

#: Byte ranges of one file closer than this are read ahead as one (the gap costs less than a second request).
READ_AHEAD_GAP = 1 << 20
#: Bytes asked for by one read-ahead call (the kernel caps what one call reads; see `read_ahead`).
READ_AHEAD_PIECE = 4 << 20


def torch_dtype(path: Path, info: TensorInfo) -> torch.dtype:
    dtype = getattr(torch, TORCH_DTYPE_NAMES.get(info.dtype, ""), None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(
            path,
            f"tensor '{info.name}' has dtype {info.dtype}, which torch {torch.__version__} cannot read; "
            "convert the checkpoint to BF16, F16 or F32",
        )
    return dtype


def open_weights(path: Path) -> int:
    """A read-only file descriptor of a weight file (the caller closes it), or a one-line `CheckpointError`."""
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CheckpointError(path, f"cannot open file ({exc.strerror})") from None


def pread_tensor(
    path: Path,
    info: TensorInfo,
    dtype: torch.dtype,
    rows: tuple[int, int] | None = None,
    scratch: torch.Tensor | None = None,
    fd: int | None = None,
) -> torch.Tensor:
    """Read one tensor's bytes (or a block of its rows) with positioned reads.

    The offsets were validated by `read_header`. The buffer is an uninitialised torch tensor (or the caller's
    reusable `scratch`, grown as needed), filled in place: no zero-fill, no extra copy. `fd` is the file
    opened by `open_weights` when the caller reads many blocks of it; without one the file is opened here.
    """
    shape = tuple(info.shape)
    start, stop = info.start, info.end
    if rows is not None:
        row_bytes = (info.end - info.start) // max(shape[0], 1)
        start, stop = info.start + rows[0] * row_bytes, info.start + rows[1] * row_bytes
        shape = (rows[1] - rows[0], *shape[1:])
    if scratch is not None:
        if scratch.numel() < stop - start:
            scratch.resize_(stop - start)
        buffer = scratch[: stop - start]
    else:
        buffer = torch.empty(stop - start, dtype=torch.uint8)
    if stop == start:
        return torch.empty(shape, dtype=dtype)
    view = memoryview(buffer.numpy())
    own = fd is None
    fd = open_weights(path) if own else fd
    try:
        done = 0
        while done < len(view):
            # pread returns at most ~2 GiB a call on Linux: loop until the block is complete.
            n = os.preadv(fd, [view[done : done + (1 << 30)]], start + done)
            if n <= 0:
                raise CheckpointError(path, f"file ended while reading tensor '{info.name}': truncated file")
            done += n
    finally:
        if own:
            os.close(fd)
    return buffer.view(dtype).reshape(shape)


def map_rows(path: Path, info: TensorInfo, dtype: torch.dtype, rows: tuple[int, int], fd: int) -> torch.Tensor:
    """A block of a tensor's rows as a tensor over a private read-only mapping of just those bytes.

    A positioned read copies the page cache into a buffer that the engine then converts to float32: two
    passes over the bytes, the first by one thread. Mapped, the conversion (every thread of the pool) reads
    the page cache directly: on the 2-core machine of `bench/README.md`, the 1B shape's fingerprint took a
    third less time (`bench/bench_fingerprint.py`). Only the block is mapped, and the mapping goes when the
    tensor does, so the process's resident memory stays one block, as with reads. The mapping is private
    (copy on write): the tensor is writable, and a write never reaches the file.

    Touching a mapped page past the end of a file kills the process (SIGBUS), so a block is mapped only when
    the file holds it (`mmap` checks the file's length, and refuses otherwise); a block that cannot be
    mapped (a file truncated since it was opened, file systems without mappings) is read with
    `pread_tensor` instead, which reports a truncated file in one line.

    Args:
        path: the file, for messages.
        info: the tensor's header entry (offsets validated by `read_header`).
        dtype: the stored dtype.
        rows: `(first, stop)` rows of the block (stop > first).
        fd: the file, opened by `open_weights`.
    """
    row_bytes = (info.end - info.start) // max(info.shape[0], 1)
    start, stop = info.start + rows[0] * row_bytes, info.start + rows[1] * row_bytes
    shape = (rows[1] - rows[0], *info.shape[1:])
    base = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        window = mmap.mmap(fd, stop - base, offset=base, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):
        return pread_tensor(path, info, dtype, rows, fd=fd)
    data = torch.frombuffer(window, dtype=torch.uint8, count=stop - start, offset=start - base)
    return data.view(dtype).reshape(shape)


def read_ahead(path: Path, spans: list[tuple[int, int]]) -> None:
    """Ask the kernel to start reading the byte ranges `spans` of `path` into the page cache, and return at once.

    The probes compute on one layer while the disk reads the next, and each layer's bytes come in a few long
    sequential reads instead of one page fault at a time (a quantised format reads its parts in another order
    than the file stores them: GPTQ transposes its words, and reads its scales and zero points apart). Ranges
    closer than `READ_AHEAD_GAP` are read as one. Advice only: nothing is read here, and a file that cannot be
    opened or advised (no `posix_fadvise` on this system) is left to the reads that follow, which report it.
    """
    if not spans or not hasattr(os, "posix_fadvise"):
        return
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= READ_AHEAD_GAP:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        for start, end in merged:
            # One piece at a time: Linux reads ahead at most a few MB of one call's range (8 MB here).
            for piece in range(start, end, READ_AHEAD_PIECE):
                os.posix_fadvise(fd, piece, min(READ_AHEAD_PIECE, end - piece), os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_finite_values(path: Path, info: TensorInfo, values: torch.Tensor) -> None:
    if not values.is_floating_point() or values.numel() == 0:
        return
    # Fast path: NaN and Inf propagate into a sum, so one vectorised reduction clears almost every tensor;
    # only a non-finite sum (or an overflow of huge finite values) pays for the exact count.
    if values.element_size() > 1 and bool(torch.isfinite(values.sum())):
        return
    # isfinite is not implemented for every float8 dtype; one byte per element makes the upcast cheap.
    values = values.float() if values.element_size() == 1 else values
    bad = int(values.numel() - torch.isfinite(values).sum())
    if bad:
        raise NonFiniteWeightsError(
            path,
            f"tensor '{info.name}' holds {bad} NaN/Inf values (of {values.numel()} read): the weights are "
            "corrupt (a diverged run or a broken conversion); re-download or re-export the checkpoint",
        )
