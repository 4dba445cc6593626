"""Parse and validate one GGUF header by hand, before any tensor byte is read.

A GGUF file (llama.cpp's format, ggml/docs/gguf.md) is the magic `GGUF`, a uint32 version, uint64 tensor and
key counts, the key/value metadata, one info per tensor (name, dimensions in GGML order, type id, offset),
padding to `general.alignment`, then the tensor data. gguf-py's `GGUFReader` memory-maps the whole file and
believes every count and length it meets: a corrupt count makes it loop or allocate absurdly, an unknown
type id ends in a bare `ValueError`, and it walks a 50k-token vocabulary one numpy view at a time (seconds).
This parser reads the header with positioned reads into one growing buffer, checks every length and count
against the bytes left in the file *before* acting on it, and turns each problem into one `CheckpointError`
line that names the file. gguf-py still supplies the format's facts (type ids, block sizes), so the two
cannot disagree on what a valid file is.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType

from lineage.errors import CheckpointError

_VERSIONS = (2, 3)  # version 1 used 32-bit counts and is long gone; gguf-py reads 2 and 3 too
_MAX_DIMS = 4  # GGML_MAX_DIMS
# The metadata and tensor infos of real models take a few MB (a 256k-token vocabulary with its merges is
# ~20 MB); a header claiming more is corrupt, and reading it would only exhaust memory.
_MAX_HEADER_BYTES = 1 << 30
_STRING, _ARRAY = 8, 9
# GGUFValueType id -> struct format and numpy dtype of the scalar types (7 is BOOL, one byte).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {k: "<" + {"?": "B"}.get(v, v) for k, v in _SCALARS.items()}
_MAX_NESTING = 3  # arrays of arrays exist in the spec; deeper nesting is only ever a crafted file
_FIX = "re-download or re-convert the file"


@dataclass(frozen=True)
class GGUFTensorRecord:
    """One tensor as its GGUF header states it.

    Attributes:
        name: the GGUF tensor name (`blk.0.attn_q.weight`).
        ggml_type: its `GGMLQuantizationType` value.
        dims: dimensions in GGML order (`ne0`, the contiguous one, first).
        start: absolute byte offset of its data in the file.
        nbytes: size of its data.
    """

    name: str
    ggml_type: int
    dims: tuple[int, ...]
    start: int
    nbytes: int

    def __post_init__(self) -> None:
        if self.ggml_type not in GGML_QUANT_SIZES:
            raise ValueError(f"unknown GGML type id {self.ggml_type}")
        if any(d <= 0 for d in self.dims) or self.start < 0 or self.nbytes < 0:
            raise ValueError("dimensions must be positive and the byte range valid")

    @property
    def type_name(self) -> str:
        """The GGML type's name (`Q4_K`, `F16`, ...)."""
        return GGMLQuantizationType(self.ggml_type).name


@dataclass(frozen=True)
class GGUFHeader:
    """The validated header of one GGUF file.

    Attributes:
        path: the file.
        version: GGUF version (2 or 3).
        metadata: key -> value (strings, numbers, bools, lists of them), in file order.
        tensors: the tensor infos, in file order.
        data_offset: where the data section starts (after the alignment padding).
        header_sha256: sha256 of the header bytes as stored (everything before the padding).
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensorRecord, ...]
    data_offset: int
    header_sha256: str


class _Cursor:
    """Positioned reads of a header of unknown length: a buffer grown by doubling, never past the file."""

    def __init__(self, fd: int, path: Path, size: int) -> None:
        self.fd, self.path, self.size = fd, path, size
        self.buf = bytearray()
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > self.size:
            raise CheckpointError(
                self.path,
                f"GGUF header: {what} at byte {self.pos} runs past the end of the file ({self.size} bytes): "
                f"the file is truncated or corrupt; {_FIX}",
            )
        if end > _MAX_HEADER_BYTES:
            raise CheckpointError(self.path, f"GGUF header: {what} lies beyond 1 GiB of header: not a real model")
        while len(self.buf) < end:
            want = min(self.size, max(end, 2 * len(self.buf), 1 << 20)) - len(self.buf)
            chunk = os.pread(self.fd, want, len(self.buf))
            if not chunk:
                raise CheckpointError(self.path, f"GGUF header: the file ended while reading {what}: truncated file")
            self.buf += chunk

    def left(self) -> int:
        return self.size - self.pos

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return value

    def raw_string(self, what: str) -> bytes:
        length = self.unpack("Q", f"length of {what}")
        if length > self.left():
            raise CheckpointError(
                self.path,
                f"GGUF header: {what} at byte {self.pos - 8} claims {length} bytes, longer than the rest of the "
                f"file ({self.left()} bytes): corrupt header; {_FIX}",
            )
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw

    def name(self, what: str) -> str:
        """A key or tensor name: UTF-8 and printable (real names are; a message quoting it stays one line)."""
        raw = self.raw_string(what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not text.isprintable() or not text:
            raise CheckpointError(
                self.path, f"GGUF header: {what} {raw[:40]!r} is empty, not UTF-8 or not printable: corrupt header"
            )
        return text


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read and validate the header of one GGUF file; tensor data is not read.

    Args:
        path: the `.gguf` file.

    Returns:
        The validated `GGUFHeader`: every tensor's bytes lie inside the file, aligned, without overlaps, and
        its shape fits its type's block size.

    Raises:
        CheckpointError: not a GGUF file, an unsupported version or byte order, or a corrupt header (one line
            naming the file, the problem and the byte offset).

    Example:
        >>> header = read_gguf_header("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
        >>> header.metadata["general.architecture"]  # doctest: +SKIP
        'llama'
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise CheckpointError(path, f"cannot open file ({exc.strerror})") from None
    try:
        return _parse(_Cursor(fd, path, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def _parse(cur: _Cursor) -> GGUFHeader:
    path = cur.path
    if cur.size < 24:
        raise CheckpointError(path, f"file of {cur.size} bytes is too short for a GGUF header: truncated or not GGUF")
    if cur.unpack("I", "magic") != GGUF_MAGIC:
        raise CheckpointError(path, "not a GGUF file (wrong magic bytes; expected 'GGUF'); point at a .gguf model file")
    version = cur.unpack("I", "version")
    if version & 0xFFFF == 0 and version:
        raise CheckpointError(path, "big-endian GGUF file: lineage reads little-endian files only; re-convert it")
    if version not in _VERSIONS:
        raise CheckpointError(path, f"GGUF version {version} is not supported (only 2 and 3); re-convert the file")
    n_tensors = cur.unpack("Q", "tensor count")
    n_keys = cur.unpack("Q", "metadata key count")
    # A key takes at least 13 bytes (8 length + 1 name + 4 type) and a tensor info at least 24: a count
    # that cannot fit in the file is corrupt, and trusting it would loop for hours.
    for count, least, what in ((n_keys, 13, "metadata key"), (n_tensors, 24, "tensor")):
        if count * least > cur.left():
            raise CheckpointError(
                path, f"GGUF header claims {count} {what}s, more than the file can hold: corrupt header; {_FIX}"
            )
    metadata: dict[str, Any] = {}
    for _ in range(n_keys):
        key = cur.name("metadata key")
        if key in metadata:
            raise CheckpointError(path, f"GGUF header: metadata key '{key}' appears twice: corrupt header")
        kind = cur.unpack("I", f"type of metadata '{key}'")
        if key == "general.alignment" and kind != 4:
            raise CheckpointError(path, "GGUF header: general.alignment is not a uint32: corrupt header")
        metadata[key] = _value(cur, kind, key, 0)
    records = [_tensor_info(cur) for _ in range(n_tensors)]
    end_of_infos = cur.pos
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if alignment <= 0 or alignment & (alignment - 1):
        raise CheckpointError(path, f"GGUF header: general.alignment {alignment} is not a power of two: corrupt")
    data_offset = -(-end_of_infos // alignment) * alignment
    tensors = _place(path, records, data_offset, alignment, cur.size)
    digest = hashlib.sha256(cur.buf[:end_of_infos]).hexdigest()
    return GGUFHeader(path, version, metadata, tensors, data_offset, digest)


def _value(cur: _Cursor, kind: int, key: str, depth: int) -> Any:
    if kind in _SCALARS:
        value = cur.unpack(_SCALARS[kind], f"value of metadata '{key}'")
        return bool(value) if kind == 7 else value
    if kind == _STRING:
        return cur.raw_string(f"string of metadata '{key}'").decode("utf-8", errors="replace")
    if kind != _ARRAY:
        raise CheckpointError(cur.path, f"GGUF header: metadata '{key}' has unknown value type {kind}: corrupt header")
    if depth >= _MAX_NESTING:
        raise CheckpointError(cur.path, f"GGUF header: metadata '{key}' nests arrays {depth + 1} deep: corrupt header")
    item = cur.unpack("I", f"element type of metadata '{key}'")
    count = cur.unpack("Q", f"length of metadata '{key}'")
    least = {_STRING: 8, _ARRAY: 12}.get(item, struct.calcsize("<" + _SCALARS.get(item, "B")))
    if count * least > cur.left():
        raise CheckpointError(
            cur.path,
            f"GGUF header: metadata '{key}' claims {count} elements, more than the file can hold: corrupt header",
        )
    if item in _NUMPY:  # numbers in bulk: one read, not one struct call per token type
        cur.need(count * least, f"array of metadata '{key}'")
        values = np.frombuffer(cur.buf, dtype=_NUMPY[item], count=count, offset=cur.pos)
        cur.pos += count * least
        return values.astype(bool).tolist() if item == 7 else values.tolist()
    if item == _STRING:
        return _strings(cur, count, key)
    return [_value(cur, item, key, depth + 1) for _ in range(count)]


_U64 = struct.Struct("<Q")


def _strings(cur: _Cursor, count: int, key: str) -> list[str]:
    """An array of `count` strings (a vocabulary: 50k-250k of them). Strings already in the buffer are sliced
    out directly; any other takes `raw_string`'s checked path, so a corrupt one fails with its message."""
    out = []
    for _ in range(count):
        pos, buf = cur.pos, cur.buf
        if pos + 8 <= len(buf):
            end = pos + 8 + _U64.unpack_from(buf, pos)[0]
            if end <= len(buf):
                out.append(buf[pos + 8 : end].decode("utf-8", errors="replace"))
                cur.pos = end
                continue
        out.append(cur.raw_string(f"string of metadata '{key}'").decode("utf-8", errors="replace"))
    return out


def _tensor_info(cur: _Cursor) -> tuple[str, int, tuple[int, ...], int]:
    name = cur.name("tensor name")
    n_dims = cur.unpack("I", f"dimension count of tensor '{name}'")
    if n_dims > _MAX_DIMS:
        raise CheckpointError(cur.path, f"GGUF header: tensor '{name}' has {n_dims} dimensions (at most 4): corrupt")
    dims = tuple(cur.unpack("Q", f"dimensions of tensor '{name}'") for _ in range(n_dims))
    ggml_type = cur.unpack("I", f"type of tensor '{name}'")
    offset = cur.unpack("Q", f"offset of tensor '{name}'")
    return name, ggml_type, dims, offset


def _place(
    path: Path, records: list[tuple[str, int, tuple[int, ...], int]], data_offset: int, alignment: int, size: int
) -> tuple[GGUFTensorRecord, ...]:
    """Check each tensor's type, shape and byte range against the file; then that no two overlap."""
    out: list[GGUFTensorRecord] = []
    seen: set[str] = set()
    for name, ggml_type, dims, offset in records:
        if name in seen:
            raise CheckpointError(path, f"GGUF header: tensor '{name}' appears twice: corrupt header; {_FIX}")
        seen.add(name)
        if ggml_type not in GGML_QUANT_SIZES:
            raise CheckpointError(
                path,
                f"tensor '{name}' has unknown GGML type id {ggml_type}: the file is corrupt or newer than the "
                "installed gguf package (pip install -U gguf)",
            )
        kind = GGMLQuantizationType(ggml_type).name
        if any(d == 0 for d in dims):
            raise CheckpointError(path, f"tensor '{name}' has a zero dimension {list(dims)}: corrupt header")
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        numel = 1
        for d in dims:
            numel *= d
        if (dims[0] if dims else 1) % block:
            raise CheckpointError(
                path,
                f"tensor '{name}' of type {kind} has rows of {dims[0] if dims else 1} values, not a multiple "
                f"of its block size {block}: corrupt header",
            )
        nbytes = numel // block * type_size
        if offset % alignment:
            raise CheckpointError(
                path, f"tensor '{name}' starts at offset {offset}, not a multiple of the alignment {alignment}"
            )
        start = data_offset + offset
        if start + nbytes > size:
            raise CheckpointError(
                path,
                f"tensor '{name}' ({kind}, {nbytes} bytes at offset {offset}) ends beyond the end of the file "
                f"({size} bytes): the file is truncated; {_FIX}",
            )
        out.append(GGUFTensorRecord(name, ggml_type, dims, start, nbytes))
    ordered = sorted(out, key=lambda r: (r.start, r.nbytes))
    for before, after in zip(ordered, ordered[1:]):
        if after.start < before.start + before.nbytes and after.nbytes and before.nbytes:
            raise CheckpointError(
                path, f"tensors '{before.name}' and '{after.name}' overlap in the file: corrupt header; {_FIX}"
            )
    return tuple(out)
