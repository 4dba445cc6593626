"""Read a GGUF model (llama.cpp's format) lazily, under Hugging Face names, values and shapes.

The header is parsed and validated by `gguf_header` (never by memory-mapping the file), names and the
converter's changes come from `gguf_layout`, and tensor data is read one tensor (or one block of rows) at a
time with positioned reads into a fresh buffer, then dequantised by gguf-py's `gguf.quants.dequantize`
(every type it implements: F16, BF16, Q4_0 ... Q8_0, the K-quants, the IQ types). No memory map is kept, so
the pages of tensors already probed never count in the process's resident memory: memory is bounded by
the largest tensor (one block of rows when streamed), as for safetensors.

A GGML row (`ne0` values, the contiguous dimension) is a Hugging Face row of a matrix, and quantisation
blocks never cross rows, so row blocks and single rows are read without touching the rest of a matrix. Q and
K of `llama` files are stored with rows permuted within heads; their rows are read through the inverse map.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf.constants import GGML_QUANT_SIZES, MODEL_TENSOR, TENSOR_NAMES, GGMLQuantizationType
from gguf.quants import dequantize

from lineage.errors import CheckpointError
from lineage.io.blocks import check_finite_values
from lineage.io.checkpoint import Checkpoint, row_runs
from lineage.io.gguf_files import gguf_model_files
from lineage.io.gguf_header import GGUFHeader, GGUFTensorRecord, read_gguf_header
from lineage.io.gguf_layout import gguf_layout, gguf_vocabulary, plain_metadata
from lineage.io.gguf_plan import TensorPlan
from lineage.io.header import TensorInfo
from lineage.io.names import model_name
from lineage.io.vocab import Vocabulary

_INTEGER_TYPES = frozenset({"I8", "I16", "I32", "I64"})
_TOKEN_EMBEDDING = TENSOR_NAMES[MODEL_TENSOR.TOKEN_EMBD] + ".weight"


@dataclass(frozen=True)
class GGUFTensorInfo(TensorInfo):
    """A GGUF tensor's facts under its Hugging Face name: `dtype` is the GGML type (`Q4_K`, `F16`, ...),
    `shape` is [out, in] (GGML's dimensions reversed), `start`/`end` its bytes in `file`.

    Attributes:
        gguf_name: the tensor's name in the file (`blk.0.attn_q.weight`).
    """

    gguf_name: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in GGMLQuantizationType.__members__:
            raise ValueError(f"unknown GGML type {self.dtype!r}")
        if any(d <= 0 for d in self.shape) or not 0 <= self.start <= self.end:
            raise ValueError(f"invalid shape {self.shape} or byte range [{self.start}, {self.end})")


@dataclass(frozen=True)
class _Entry:
    record: GGUFTensorRecord
    plan: TensorPlan
    row_map: np.ndarray | None  # Hugging Face row -> stored row; None when not permuted


_RECONVERT = "re-convert the model"


class GGUFCheckpoint(Checkpoint):
    """Lazy, read-only view of one GGUF model (a `.gguf` file, a split set, or a folder holding one).

    Args:
        path: a `.gguf` file (any split of a set), or a folder holding one GGUF model.

    Attributes:
        folder: the file's folder.
        name: the file's stem (without the split suffix), or the folder's name when a folder was given.
        files: the GGUF files (every split, in order).
        config: a transformers-style config synthesised from the metadata (`model_type`, head counts...).
        metadata: the GGUF metadata without its long arrays (`general.name`, `general.base_model.0.name`...).

    Raises:
        CheckpointError: a missing split, a corrupt header, an unknown architecture.

    Example:
        >>> with GGUFCheckpoint("SmolLM2-135M-Instruct.Q4_1.gguf") as ckpt:  # doctest: +SKIP
        ...     q = ckpt.tensor("model.layers.0.self_attn.q_proj.weight")
    """

    def __init__(self, path: str | Path) -> None:
        given = Path(path)
        if not given.exists():
            raise CheckpointError(given, "no such file or folder; check the path")
        self.files: tuple[Path, ...] = gguf_model_files(given)
        self.folder: Path = self.files[0].parent
        self.name: str = model_name(given)
        self._headers: tuple[GGUFHeader, ...] = tuple(read_gguf_header(f) for f in self.files)
        self._meta = self._headers[0].metadata
        records = _records(self._headers)
        layout = gguf_layout(self.files[0], self._meta, {n: r.dims for n, (_, r) in records.items()})
        self.config: dict[str, Any] = layout.config
        self.metadata: dict[str, Any] = plain_metadata(self._meta)
        self._infos: dict[str, TensorInfo] = {}
        self._entries: dict[str, _Entry] = {}
        self._joined: dict[str, tuple[GGUFTensorInfo, _Entry, GGUFTensorInfo, _Entry]] = {}
        self._records = records
        for plan in layout.plans.values():
            if plan.parts:
                info, entry = _composed(records, plan)
            else:
                info, entry = _stored(records, plan, plan.gguf_name)
            if plan.joined is not None:
                info, entry = self._join(records, plan, info, entry)
            self._infos[plan.hf_name] = info
            self._entries[plan.hf_name] = entry
        self._fds: dict[Path, int] = {}
        self._closed = False

    def _read_vocabulary(self) -> Vocabulary | None:
        """The embedded tokenizer's vocabulary (`tokenizer.ggml.tokens`), None when the file has none.

        Raises:
            CheckpointError: malformed tokens or token types, or a token count other than the embedding's rows
                (llama.cpp takes the vocabulary size from the token list and refuses such a file).
        """
        try:
            vocabulary = gguf_vocabulary(self._meta)
        except ValueError as exc:
            raise CheckpointError(self.files[0], f"{exc}: the metadata is corrupt or edited; {_RECONVERT}") from None
        embed = next((i for i in self._infos.values() if i.gguf_name == _TOKEN_EMBEDDING), None)
        if vocabulary is not None and embed is not None and embed.shape and len(vocabulary) != embed.shape[0]:
            raise CheckpointError(
                self.files[0],
                f"tokenizer.ggml.tokens holds {len(vocabulary)} tokens for {embed.shape[0]} embedding rows: the "
                f"metadata is corrupt or edited; {_RECONVERT}",
            )
        return vocabulary

    def header_sha256(self) -> str:
        """Content address of the model's headers.

        sha256 over the canonical JSON of every tensor's Hugging Face name, GGML type and shape, then each
        file's header digest (magic to the end of the tensor infos, as stored) in split order. Tensor data
        is not read.

        Returns:
            The hex digest.
        """
        digest = self._table_digest()
        for header in self._headers:
            digest.update(bytes.fromhex(header.header_sha256))
        return digest.hexdigest()

    # -- data ----------------------------------------------------------------------------------------

    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        """Read one whole tensor, dequantised, in Hugging Face layout.

        Args:
            name: Hugging Face tensor name.
            dtype: dtype of the returned tensor.
            check_finite: raise if the values hold NaN or Inf.

        Returns:
            A new CPU tensor of shape `info(name).shape`.

        Raises:
            KeyError: no such tensor.
            CheckpointError: a type gguf-py cannot dequantise, or a read error.
            NonFiniteWeightsError: NaN/Inf values and `check_finite`.
        """
        info, entry = self.info(name), self._entries.get(name)
        self._check_open()
        if name in self._joined:
            return self._finish(info, entry, self._joined_values(name), dtype, check_finite)
        if entry.plan.parts:
            return self._finish(info, entry, self._composed_values(entry.plan, None), dtype, check_finite)
        rows = info.shape[0] if len(info.shape) > 1 else 1
        values = self._stored_rows(info, entry, 0, rows).reshape(info.shape)
        if entry.row_map is not None:
            values = values[torch.from_numpy(entry.row_map)]
        return self._finish(info, entry, values, dtype, check_finite)

    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Read a tensor as consecutive blocks of whole rows, each at most about `max_bytes` once converted.

        Args:
            name: Hugging Face tensor name.
            max_bytes: bound on one converted block (at least one row, or one head of a permuted Q/K).
            dtype: dtype of the blocks; None is float32 (the dequantised values).
            check_finite: raise if a block holds NaN or Inf.

        Yields:
            `(first_row, block)` pairs covering the tensor in order.
        """
        info, entry = self.info(name), self._entries.get(name)
        self._check_open()
        dtype = dtype or torch.float32
        # A joined or composed tensor is read whole (two small matrices, one transposed matrix, a stack of them).
        if len(info.shape) < 2 or name in self._joined or entry.plan.parts:
            whole = self.tensor(name, dtype=dtype, check_finite=check_finite)
            step = max(1, max_bytes // max(1, whole[0].numel() * whole.element_size())) if whole.dim() > 1 else 0
            for start in range(0, whole.shape[0], step) if step else (0,):
                yield start, whole[start : start + step] if step else whole
            return
        rows = info.shape[0]
        per_row = max(1, info.numel // rows) * torch.empty((), dtype=dtype).element_size()
        step = max(1, max_bytes // per_row)
        if entry.row_map is not None and entry.plan.head_groups:
            head = rows // entry.plan.head_groups  # whole heads: each block's stored rows are one contiguous run
            step = max(head, step // head * head)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            if entry.row_map is None:
                block = self._stored_rows(info, entry, start, stop)
            else:
                src = entry.row_map[start:stop]
                lo, hi = int(src.min()), int(src.max()) + 1
                block = self._stored_rows(info, entry, lo, hi)[torch.from_numpy(src - lo)]
            yield start, self._finish(info, entry, block, dtype, check_finite)

    def rows(
        self,
        name: str,
        index: Sequence[int] | torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:
        """Read the given rows of a tensor, dequantising only those rows' bytes.

        Args:
            name: Hugging Face tensor name, e.g. `model.embed_tokens.weight`.
            index: row numbers; negative numbers count from the end.
            dtype: dtype of the returned tensor.
            check_finite: raise if the rows read hold NaN or Inf.

        Returns:
            A tensor of shape `(len(index), *shape[1:])`, in the order of `index`.

        Raises:
            KeyError, ValueError, IndexError: as for `CheckpointReader.rows`.
            CheckpointError, NonFiniteWeightsError: as for `tensor`.
        """
        info, unique, inverse = self._row_index(name, index)
        entry = self._entries[name]
        self._check_open()
        if entry.plan.stacked:  # the experts asked for, each joined from its own slices of the stored stacks
            values = self._composed_values(entry.plan, unique.tolist())
            return self._finish(info, entry, values, dtype, check_finite)[inverse]
        if len(info.shape) < 2 or name in self._joined or entry.plan.parts:
            return self.tensor(name, dtype=dtype, check_finite=check_finite)[unique][inverse]
        wanted = unique.numpy()
        src = entry.row_map[wanted] if entry.row_map is not None else wanted
        src_unique, src_inverse = np.unique(src, return_inverse=True)
        pieces = [self._stored_rows(info, entry, a, b) for a, b in row_runs(src_unique.tolist())]
        raw = torch.cat(pieces) if pieces else torch.empty((0, *info.shape[1:]))
        values = raw[torch.from_numpy(src_inverse.reshape(-1))]
        return self._finish(info, entry, values, dtype, check_finite)[inverse]

    # -- a tensor the converter split in two ---------------------------------------------------------

    def _join(
        self, records: dict, plan: TensorPlan, first: GGUFTensorInfo, entry: _Entry
    ) -> tuple[GGUFTensorInfo, _Entry]:
        """The Hugging Face tensor `[heads * (a + b), in]` of two stored parts, `first` `[heads, in, a]` (each
        head's rows transposed) and `plan.joined` `[heads, b, in]` (`lineage.arch.gguf.JOINED`)."""
        second, second_entry = _stored(records, plan, plan.joined)
        a, b = first.shape, second.shape
        if len(a) != 3 or len(b) != 3 or a[0] != b[0] or a[1] != b[2]:
            raise CheckpointError(
                self.folder / first.file, f"tensors '{first.gguf_name}' {list(a)} and '{second.gguf_name}' "
                f"{list(b)} are not the two halves of one matrix ([heads, in, a] and [heads, b, in]): corrupt "
                f"header; {_RECONVERT}",
            )  # fmt: skip
        self._joined[plan.hf_name] = (first, entry, second, second_entry)
        shape = (a[0] * (a[2] + b[1]), a[1])
        return replace(first, shape=shape), entry

    def _joined_values(self, name: str) -> torch.Tensor:
        first, entry, second, second_entry = self._joined[name]
        key = self._stored_rows(first, entry, 0, first.shape[0]).transpose(1, 2)  # [heads, a, in]
        value = self._stored_rows(second, second_entry, 0, second.shape[0])  # [heads, b, in]
        return torch.cat([key, value], dim=1).reshape(-1, first.shape[1])

    # -- a tensor joined from slices of stored ones (`TensorPlan.parts`) -------------------------------

    def _composed_values(self, plan: TensorPlan, experts: list[int] | None) -> torch.Tensor:
        """The Hugging Face tensor of a composed plan: every expert asked for (all when None) of a stacked one,
        else its one matrix."""
        if not plan.stacked:
            return self._composed_matrix(plan, plan.expert)
        count = self._records[plan.parts[0][0]][1].dims[-1]
        return torch.stack([self._composed_matrix(plan, e) for e in (range(count) if experts is None else experts)])

    def _composed_matrix(self, plan: TensorPlan, expert: int | None) -> torch.Tensor:
        pieces = []
        for gguf_name, lo, hi in plan.parts:
            info, entry = _stored(self._records, TensorPlan(gguf_name, plan.hf_name, expert=expert), gguf_name)
            if len(info.shape) == 1:
                pieces.append(self._stored_rows(info, entry, 0, 1).reshape(-1)[lo:hi])
            else:
                pieces.append(self._stored_rows(info, entry, lo, info.shape[0] if hi is None else hi))
        x = torch.stack(pieces, dim=1).flatten(0, 1) if plan.interleave else torch.cat(pieces)
        return (x.T if plan.transpose and x.dim() == 2 else x).contiguous()

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the cached file descriptors; the reader cannot read tensors afterwards."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._closed = True

    def __repr__(self) -> str:
        return f"GGUFCheckpoint({self.name!r}: {len(self._infos)} tensors in {len(self.files)} file(s))"

    # -- internals -----------------------------------------------------------------------------------

    def _stored_rows(self, info: TensorInfo, entry: _Entry, lo: int, hi: int) -> torch.Tensor:
        """Stored rows `[lo, hi)` (the whole tensor for a vector), dequantised to float32."""
        rec = entry.record
        rows = info.shape[0] if len(info.shape) > 1 else 1
        row_bytes = (info.end - info.start) // rows  # an expert's slice of a stack: its own bytes, not the stack's
        path = self.folder / info.file
        raw = np.empty((hi - lo) * row_bytes, dtype=np.uint8)
        self._pread(path, info.name, raw, info.start + lo * row_bytes)
        ne0 = rec.dims[0] if rec.dims else 1
        block, type_size = GGML_QUANT_SIZES[rec.ggml_type]
        if info.dtype in _INTEGER_TYPES:
            raise CheckpointError(path, f"tensor '{info.name}' holds integers ({info.dtype}), not weights to probe")
        try:  # NaN/Inf in corrupt blocks are the finite check's to report, not numpy warnings on stderr
            with np.errstate(all="ignore"):
                if info.dtype == "F64":
                    values = raw.view("<f8").astype(np.float32)
                else:
                    qtype = GGMLQuantizationType(rec.ggml_type)
                    values = dequantize(raw.reshape(-1, ne0 // block * type_size), qtype)
        except NotImplementedError:
            raise CheckpointError(
                path, f"tensor '{info.name}' has type {info.dtype}, which the installed gguf package cannot "
                "dequantise (pip install -U gguf)"
            ) from None  # fmt: skip
        out_shape = (hi - lo, *info.shape[1:]) if len(info.shape) > 1 else info.shape
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(out_shape)

    def _finish(
        self, info: TensorInfo, entry: _Entry, values: torch.Tensor, dtype: torch.dtype, check_finite: bool
    ) -> torch.Tensor:
        if entry.plan.norm_shift:
            values = values - entry.plan.norm_shift
        if check_finite:
            check_finite_values(self.folder / info.file, info, values)
        return values.to(dtype)

    def _pread(self, path: Path, name: str, buffer: np.ndarray, offset: int) -> None:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise CheckpointError(path, f"cannot open file ({exc.strerror})") from None
        view, done = memoryview(buffer), 0
        while done < len(view):
            # pread returns at most ~2 GiB a call on Linux: loop until the buffer is full.
            n = os.preadv(fd, [view[done : done + (1 << 30)]], offset + done)
            if n <= 0:
                raise CheckpointError(path, f"file ended while reading tensor '{name}': truncated file")
            done += n


def _stored(
    records: dict[str, tuple[Path, GGUFTensorRecord]], plan: TensorPlan, gguf_name: str
) -> tuple[GGUFTensorInfo, _Entry]:
    """The facts of one stored tensor under `plan`'s Hugging Face name: the whole record, or one expert's slice
    of a stacked record (`[E, out, in]`: expert `e` is the `e`-th of E equal runs of bytes)."""
    file, rec = records[gguf_name]
    if not rec.dims:  # llama.cpp writes at least one dimension; a scalar weight is a corrupt record
        raise CheckpointError(file, f"tensor '{gguf_name}' has no dimensions: corrupt header; re-convert it")
    shape, start, end = tuple(reversed(rec.dims)), rec.start, rec.start + rec.nbytes
    if plan.expert is not None:
        count = shape[0]
        if plan.expert >= count or rec.nbytes % count:
            raise CheckpointError(file, f"tensor '{gguf_name}' cannot hold expert {plan.expert} of {count} "
                                  f"in {rec.nbytes} bytes: corrupt header; {_RECONVERT}")  # fmt: skip
        size = rec.nbytes // count
        shape, start, end = shape[1:], rec.start + plan.expert * size, rec.start + (plan.expert + 1) * size
    info = GGUFTensorInfo(plan.hf_name, rec.type_name, shape, file.name, start, end, gguf_name=gguf_name)
    return info, _Entry(rec, plan, plan.row_map(shape[0]))  # Q/K biases are permuted like the weights' rows


def _composed(records: dict[str, tuple[Path, GGUFTensorRecord]], plan: TensorPlan) -> tuple[GGUFTensorInfo, _Entry]:
    """The facts of a tensor joined from slices of stored ones (`TensorPlan.parts`): its Hugging Face shape (the
    parts' rows joined, transposed, stacked over the experts), its bytes those of every part it reads."""
    file, first = records[plan.parts[0][0]]
    per_expert = plan.stacked or plan.expert is not None
    rows, rest, size, count = 0, None, 0, None
    for gguf_name, lo, hi in plan.parts:
        part_file, rec = records[gguf_name]
        shape = tuple(reversed(rec.dims))
        experts, shape = (shape[0], shape[1:]) if per_expert else (None, shape)
        end = shape[0] if hi is None else hi
        if not shape or not 0 <= lo < end <= shape[0] or (rest is not None and (shape[1:], experts) != (rest, count)):
            raise CheckpointError(part_file, f"tensor '{gguf_name}' {list(reversed(rec.dims))} does not fit beside "
                                  f"the other parts of '{plan.hf_name}': corrupt header; {_RECONVERT}")  # fmt: skip
        if plan.expert is not None and plan.expert >= experts:
            raise CheckpointError(part_file, f"tensor '{gguf_name}' holds {experts} experts, not expert "
                                  f"{plan.expert}: corrupt header; {_RECONVERT}")  # fmt: skip
        rows, rest, count = rows + end - lo, shape[1:], experts
        size += rec.nbytes // (experts if plan.expert is not None else 1)
    if plan.interleave and (len(plan.parts) != 2 or rows % 2):
        raise CheckpointError(file, f"'{plan.hf_name}' alternates the rows of two equal parts: corrupt header")
    matrix = (rows, *rest)
    if plan.transpose and len(matrix) == 2:
        matrix = matrix[::-1]
    shape = (count, *matrix) if plan.stacked else matrix
    info = GGUFTensorInfo(plan.hf_name, first.type_name, shape, file.name, first.start, first.start + size,
                          gguf_name=plan.gguf_name)  # fmt: skip
    return info, _Entry(first, plan, None)


def _records(headers: tuple[GGUFHeader, ...]) -> dict[str, tuple[Path, GGUFTensorRecord]]:
    """Every tensor of a split set by GGUF name, with the file that holds it."""
    first = headers[0]
    count = first.metadata.get("split.count")
    if isinstance(count, int) and count != len(headers):
        raise CheckpointError(first.path, f"GGUF split.count says {count} files, but {len(headers)} are named so")
    records: dict[str, tuple[Path, GGUFTensorRecord]] = {}
    for header in headers:
        for rec in header.tensors:
            if rec.name in records:
                raise CheckpointError(header.path, f"tensor '{rec.name}' is also in another split: corrupt split set")
            records[rec.name] = (header.path, rec)
    if not records:
        raise CheckpointError(first.path, "the GGUF file holds no tensors: not a model (a vocabulary-only file?)")
    total = first.metadata.get("split.tensors.count")
    if isinstance(total, int) and total != len(records):
        raise CheckpointError(first.path, f"GGUF split.tensors.count is {total}; the splits hold {len(records)}")
    return records
