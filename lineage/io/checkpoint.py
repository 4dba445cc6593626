"""What every checkpoint reader shares: a table of `TensorInfo` by Hugging Face name, and its queries.

lineage reads safetensors folders, GGUF files, PEFT adapters (base + merged delta) and `hf://` models
(fetched, then read as a folder); the rest of lineage sees one interface, this class. The format-specific
parts (reading bytes, hashing headers, finding the vocabulary) live in the subclasses; the name table, the
counts, the lazy vocabulary, the row-index checks and the context manager live here once. Which reader a
path gets is `lineage.io.open.open_checkpoint`'s to decide.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from lineage.io.blocks import read_ahead
from lineage.io.header import TensorInfo
from lineage.io.vocab import Vocabulary


class Checkpoint(ABC):
    """A lazy, read-only view of one model's tensors, under their Hugging Face names and [out, in] shapes.

    Attributes:
        folder: the model folder (the file's folder for a single file).
        name: the model's name.
        files: the weight files, sorted.
        config: the (parsed or synthesised) transformers config, {} when unknown.
    """

    folder: Path
    name: str
    files: tuple[Path, ...]
    config: dict[str, Any]
    _infos: dict[str, TensorInfo]
    _closed: bool = False

    # -- the name table ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Return all tensor names, sorted."""
        return sorted(self._infos)

    def file_of(self, name: str) -> Path:
        """The file that holds the tensor `name` (what a message about that tensor names)."""
        return self.folder / self.info(name).file

    def info(self, name: str) -> TensorInfo:
        """Return the header facts of one tensor.

        Args:
            name: tensor name.

        Returns:
            Its `TensorInfo`.

        Raises:
            KeyError: no such tensor.
        """
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"no tensor '{name}' in checkpoint '{self.name}'") from None

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[TensorInfo]:
        return (self._infos[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._infos)

    @property
    def num_parameters(self) -> int:
        """Total number of elements over all tensors (tied weights stored once count once)."""
        return sum(info.numel for info in self._infos.values())

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The stored dtypes present (safetensors dtypes, or GGML types for GGUF), sorted and unique."""
        return tuple(sorted({info.dtype for info in self._infos.values()}))

    @cached_property
    def vocabulary(self) -> Vocabulary | None:
        """The tokenizer's vocabulary, None when the checkpoint has none (read on first use, then kept)."""
        return self._read_vocabulary()

    # -- what each format implements -----------------------------------------------------------------

    @abstractmethod
    def _read_vocabulary(self) -> Vocabulary | None:
        """Read the tokenizer's vocabulary (`vocabulary` calls it once)."""

    @abstractmethod
    def header_sha256(self) -> str:
        """Content address of the checkpoint's headers (no tensor data read)."""

    @abstractmethod
    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        """Read one whole tensor."""

    @abstractmethod
    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Read a tensor as consecutive `(first_row, block)` pairs of at most about `max_bytes` each.

        A block may live in a buffer the reader reuses: it is valid until the next one is asked for. `dtype`
        None lets the reader yield whatever float dtype it holds the values in (bf16 as stored, say)."""

    @abstractmethod
    def rows(
        self, name: str, index: Sequence[int] | torch.Tensor, *, dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:  # fmt: skip
        """Read the given rows (first-dimension entries) of a tensor."""

    def quantisation_noise(self, name: str, expert: int | None = None) -> torch.Tensor | None:
        """Per row of `name`, the expected squared error its quantisation's rounding left in the values read
        (float64 [out], `lineage.io.quant`; of a stack of experts stored `[E, in, out]`, expert `expert`'s per
        output); None where the reader stores it unquantised or cannot say."""
        return None

    def prefetch(self, names: Iterable[str]) -> None:
        """Start reading the tensors `names` into the page cache in the background (`read_ahead`: a hint; the
        reads that follow are what read them). Unknown names are skipped. Readers over another reader pass the
        names on to it."""
        spans: dict[Path, list[tuple[int, int]]] = {}
        for name in names:
            for path, start, end in self._spans(name):
                spans.setdefault(path, []).append((start, end))
        for path, ranges in spans.items():
            read_ahead(path, ranges)

    def _spans(self, name: str) -> list[tuple[Path, int, int]]:
        """Where the bytes of tensor `name` lie: `(file, start, end)` for each part (none when unknown)."""
        info = self._infos.get(name)
        return [] if info is None else [(self.folder / info.file, info.start, info.end)]

    @abstractmethod
    def close(self) -> None:
        """Release file handles; the reader cannot read tensors afterwards."""

    # -- shared helpers ------------------------------------------------------------------------------

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _table_digest(self) -> hashlib._Hash:
        """sha256 over the canonical JSON (sorted keys, no spaces) of every tensor's name, dtype and shape:
        where each format's `header_sha256` starts, before its own header bytes."""
        table = {i.name: {"dtype": i.dtype, "shape": list(i.shape)} for i in self._infos.values()}
        return hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":")).encode())

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"checkpoint reader '{self.name}' is closed")

    def _row_index(
        self, name: str, index: Sequence[int] | torch.Tensor
    ) -> tuple[TensorInfo, torch.Tensor, torch.Tensor]:
        """Validate a row index; return the tensor's info, the sorted unique rows, and the inverse map.

        Raises:
            KeyError: no such tensor.
            ValueError: the tensor is a scalar, or `index` is not a one-dimensional list of integers.
            IndexError: a row number out of range.
        """
        info = self.info(name)
        if not info.shape:
            raise ValueError(f"tensor '{name}' is a scalar; it has no rows")
        idx = torch.as_tensor(index)
        # A bool mask or float index cast to long would silently pick the wrong rows.
        if idx.numel() and (idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool):
            raise ValueError(f"row index must hold integers, got {idx.dtype}")
        idx = idx.long()
        if idx.dim() != 1:
            raise ValueError(f"row index must be one-dimensional, got shape {tuple(idx.shape)}")
        n = info.shape[0]
        if idx.numel() and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for tensor '{name}' with {n} rows")
        idx = torch.where(idx < 0, idx + n, idx)
        unique, inverse = torch.unique(idx, sorted=True, return_inverse=True)
        return info, unique, inverse


def row_runs(rows: list[int]) -> Iterator[tuple[int, int]]:
    """Yield `[start, stop)` ranges covering sorted unique `rows` with as few reads as possible."""
    if not rows:
        return
    start = prev = rows[0]
    for row in rows[1:]:
        if row != prev + 1:
            yield start, prev + 1
            start = row
        prev = row
    yield start, prev + 1
