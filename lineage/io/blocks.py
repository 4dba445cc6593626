"""Reading tensor bytes: positioned reads into reusable buffers, dtype lookup, the NaN/Inf check.

Kept apart from `reader.py` (which decides *what* to read) because this is *how* bytes become tensors:
no memory map, so pages of tensors already probed never count in the process's resident memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lineage.errors import CheckpointError, NonFiniteWeightsError
from lineage.io.constants import TORCH_DTYPE_NAMES
from lineage.io.header import TensorInfo


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
