"""Parse and validate one safetensors header by hand, before `safe_open` ever maps the file.

A safetensors file is an 8-byte little-endian length N, N bytes of JSON, then the tensor data. The Rust
crate validates the same facts, but its errors are terse and name neither the file nor the fix; checking
them here first lets every problem surface as one `CheckpointError` line that says which file, what is
wrong and what to do. The checks follow what safetensors 0.8 itself rejects: tensors must be packed back
to back from offset 0 (no holes, no overlaps) and must cover the data section exactly (no trailing bytes).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.errors import CheckpointError
from lineage.io.constants import DTYPE_BITS, LENGTH_PREFIX_BYTES, MAX_HEADER_BYTES, METADATA_KEY
from lineage.io.jsonfile import json_problem

_REDOWNLOAD = "re-download or re-export the checkpoint"


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, as its file's header says.

    Attributes:
        name: tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`.
        dtype: safetensors dtype string (`"F32"`, `"BF16"`, `"F8_E4M3"`, ...).
        shape: tensor shape.
        file: file name relative to the model folder.
        start: absolute byte offset of the first byte in the file (past the 8 + N header bytes).
        end: absolute byte offset one past the last byte.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BITS:
            raise ValueError(f"unknown safetensors dtype {self.dtype!r}")
        if any(d < 0 for d in self.shape):
            raise ValueError(f"negative dimension in shape {self.shape}")
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid byte range [{self.start}, {self.end})")

    @property
    def numel(self) -> int:
        """Number of elements (1 for a scalar)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in bytes."""
        return self.end - self.start


@dataclass(frozen=True)
class FileHeader:
    """The validated header of one safetensors file.

    Attributes:
        path: the file.
        tensors: tensor name -> `TensorInfo`, in header order.
        metadata: the `__metadata__` string map ({} when absent).
        header_bytes: the raw JSON header, exactly as stored (padding included).
    """

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    header_bytes: bytes


def read_header(path: Path, *, file: str | None = None) -> FileHeader:
    """Read and validate the header of one safetensors file; reads no tensor data.

    Args:
        path: the safetensors file.
        file: the name recorded in each `TensorInfo.file`, relative to the model folder (default: the
            file's own name).

    Returns:
        The validated `FileHeader`.

    Raises:
        CheckpointError: the file is missing, truncated, or its header is malformed; the message names the
            file and the problem.

    Example:
        >>> header = read_header(Path("model/model.safetensors"))
        >>> header.tensors["model.embed_tokens.weight"].shape
        (32000, 4096)
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(LENGTH_PREFIX_BYTES)
            if len(prefix) < LENGTH_PREFIX_BYTES:
                raise CheckpointError(
                    path,
                    f"file is {size} bytes, shorter than the 8-byte safetensors length prefix: it is "
                    f"truncated or not a safetensors file; {_REDOWNLOAD}",
                )
            (length,) = struct.unpack("<Q", prefix)
            _check_length(path, length, size)
            raw = handle.read(length)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file ({exc.strerror or exc})") from exc
    if len(raw) < length:  # the file shrank between stat() and read()
        raise CheckpointError(path, f"header is truncated: {len(raw)} of {length} bytes; {_REDOWNLOAD}")

    parsed = _parse_json(path, raw)
    metadata = _check_metadata(path, parsed.pop(METADATA_KEY, None))
    data_start = LENGTH_PREFIX_BYTES + length
    name = path.name if file is None else file
    tensors = {key: _tensor_info(path, key, entry, name, data_start) for key, entry in parsed.items()}
    _check_layout(path, tensors, data_start, size)
    return FileHeader(path=path, tensors=tensors, metadata=metadata, header_bytes=raw)


def _check_length(path: Path, length: int, size: int) -> None:
    if length > MAX_HEADER_BYTES:
        raise CheckpointError(
            path,
            f"header length {length} bytes exceeds the 100 MB safetensors limit: not a safetensors file or "
            f"corrupt; {_REDOWNLOAD}",
        )
    if LENGTH_PREFIX_BYTES + length > size:
        raise CheckpointError(
            path,
            f"header length {length} bytes runs past the end of the file ({size} bytes): the file is "
            f"truncated or not safetensors; {_REDOWNLOAD}",
        )


def _parse_json(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, f"header is not UTF-8 (byte {exc.start}): not a safetensors file") from exc
    try:
        parsed = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as exc:
        raise CheckpointError(path, f"header lists key '{exc.args[0]}' twice; {_REDOWNLOAD}") from exc
    except (ValueError, RecursionError) as exc:  # malformed, nested too deeply, an integer of 5,000 digits
        raise CheckpointError(path, f"header is not valid JSON ({json_problem(exc)}); {_REDOWNLOAD}") from None
    if not isinstance(parsed, dict):
        raise CheckpointError(path, f"header is a JSON {type(parsed).__name__}, not an object: not a safetensors file")
    return parsed


class _DuplicateKey(Exception):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two equal keys, hiding a tensor; refuse instead.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _check_metadata(path: Path, metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(path, f"header '{METADATA_KEY}' must map strings to strings; {_REDOWNLOAD}")
    return dict(metadata)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(path: Path, name: str, entry: Any, file: str, data_start: int) -> TensorInfo:
    where = f"tensor '{name}'"
    if not isinstance(entry, dict):
        raise CheckpointError(path, f"{where}: header entry is a JSON {type(entry).__name__}, not an object")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise CheckpointError(path, f"{where}: header entry lacks {', '.join(missing)}; {_REDOWNLOAD}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise CheckpointError(path, f"{where}: dtype must be a string, got {dtype!r}")
    if dtype not in DTYPE_BITS:
        raise CheckpointError(
            path, f"{where}: unknown dtype '{dtype}' (safetensors knows {', '.join(sorted(DTYPE_BITS))})"
        )
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CheckpointError(path, f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) and o >= 0 for o in offsets)):
        raise CheckpointError(path, f"{where}: data_offsets must be two non-negative integers, got {offsets!r}")
    begin, end = offsets
    if begin > end:
        raise CheckpointError(path, f"{where}: data_offsets [{begin}, {end}] end before they begin; {_REDOWNLOAD}")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        need = f"{bits / 8:g}"
        raise CheckpointError(
            path, f"{where}: holds {end - begin} bytes but {dtype} x {list(shape)} needs {need}; {_REDOWNLOAD}"
        )
    return TensorInfo(name, dtype, tuple(shape), file, data_start + begin, data_start + end)


def _check_layout(path: Path, tensors: dict[str, TensorInfo], data_start: int, size: int) -> None:
    # safetensors requires the tensors packed back to back from the start of the data section, in offset order.
    expected = data_start
    previous = None
    for info in sorted(tensors.values(), key=lambda i: (i.start, i.end)):
        if info.start < expected:
            raise CheckpointError(path, f"tensor '{info.name}' overlaps tensor '{previous}'; {_REDOWNLOAD}")
        if info.start > expected:
            raise CheckpointError(
                path,
                f"{info.start - expected} unused bytes before tensor '{info.name}' (safetensors requires "
                f"tensors packed back to back); {_REDOWNLOAD}",
            )
        expected, previous = info.end, info.name
    if size < expected:
        raise CheckpointError(
            path, f"file is truncated: the header needs {expected} bytes, the file holds {size}; {_REDOWNLOAD}"
        )
    if size > expected:
        raise CheckpointError(
            path, f"{size - expected} trailing bytes after the last tensor (safetensors rejects them); {_REDOWNLOAD}"
        )
