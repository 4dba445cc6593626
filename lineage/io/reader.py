"""`CheckpointReader`: safetensors weights (a model folder, sharded or not, or one file), read lazily.

Opening a checkpoint reads only headers (a few KB per file), so a 70B model opens as fast as a tiny one;
tensors are then read one at a time. A whole tensor is read with one positioned read (`os.pread`) at the
offsets our own header checks validated, into a fresh buffer: no memory map, so the pages of tensors
already probed are not counted in the process's resident memory, which stays near the largest tensor
however large the model; `row_blocks` maps one block of rows at a time instead (`lineage.io.blocks.map_rows`),
unmapped when the next is asked for. `rows` reads a handful of embedding rows through `safe_open(...).get_slice`
without touching the rest of the matrix; the reader keeps one `safe_open` handle per file for that,
opened on first use, and holds no tensor data between calls.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from lineage.errors import CheckpointError
from lineage.io.blocks import check_finite_values, map_rows, open_weights, pread_tensor, torch_dtype
from lineage.io.checkpoint import Checkpoint, row_runs
from lineage.io.constants import CONFIG_FILE
from lineage.io.header import FileHeader, TensorInfo, read_header
from lineage.io.index import ModelFiles, locate_files
from lineage.io.jsonfile import read_json_object
from lineage.io.names import model_name
from lineage.io.quant import quantized_layout
from lineage.io.vocab import Vocabulary, find_vocabulary

_runs = row_runs  # the name the reader's tests spy on


class CheckpointReader(Checkpoint):
    """Lazy, read-only view of one safetensors checkpoint (a model folder or a single file).

    Args:
        path: a model folder (single file, sharded with an index, or several `*.safetensors`), or one
            `.safetensors` file.

    Attributes:
        folder: the model folder.
        name: the folder's name (the file's stem when a lone `.safetensors` file other than
            `model.safetensors` was given).
        files: the safetensors files, sorted.
        config: the parsed `config.json`, {} when absent.

    Raises:
        CheckpointError: the folder or one of its files cannot be used (see `locate_files`, `read_header`).
        UnsafeCheckpointError: pickled weights only, or files outside the folder.

    Example:
        >>> with CheckpointReader("models/tiny-llama") as ckpt:
        ...     emb = ckpt.rows("model.embed_tokens.weight", [1, 2, 3])
    """

    def __init__(self, path: str | Path) -> None:
        located = locate_files(path)
        self.folder: Path = located.folder
        self.name: str = model_name(path)
        self.files: tuple[Path, ...] = located.files
        self.config: dict[str, Any] = _read_config(located.config)
        self._headers: dict[Path, FileHeader] = {
            f: read_header(f, file=f.relative_to(located.folder).as_posix()) for f in located.files
        }
        self._stored: dict[str, TensorInfo] = _merge(self._headers, located)
        self._handles: dict[Path, Any] = {}
        self._closed = False
        # A quantised checkpoint shows each quantised layer as one logical float weight (`lineage.io.quant`).
        self._quant = quantized_layout(
            self._stored, self.config, self.folder, located.config or self.folder / CONFIG_FILE, self._read_stored
        )
        self._infos: dict[str, TensorInfo] = self._quant.infos if self._quant is not None else self._stored

    def _read_vocabulary(self) -> Vocabulary | None:
        """The tokenizer's vocabulary (`tokenizer.json` in the folder), None when the folder has none."""
        return find_vocabulary(self.folder)

    # -- headers -------------------------------------------------------------------------------------

    def header_sha256(self) -> str:
        """Content address of the checkpoint's headers.

        sha256 over the canonical JSON (sorted keys, no spaces) of every tensor's name, dtype and shape,
        then, for each file in sorted order, its header block as stored on disk (8-byte little-endian
        length, then the raw JSON header bytes). Equal weights saved the same way hash equal; any change
        of names, shapes, dtypes, sharding or metadata changes the hash. Tensor data is not read.

        Returns:
            The hex digest.
        """
        digest = self._table_digest()
        for path in self.files:
            raw = self._headers[path].header_bytes
            digest.update(struct.pack("<Q", len(raw)))
            digest.update(raw)
        return digest.hexdigest()

    # -- data ----------------------------------------------------------------------------------------

    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        """Read one whole tensor.

        Args:
            name: tensor name.
            dtype: dtype of the returned tensor (F8/BF16/F16 are converted exactly to float32).
            check_finite: raise if the stored values hold NaN or Inf.

        Returns:
            A new CPU tensor with the header's shape.

        Raises:
            KeyError: no such tensor.
            CheckpointError: a dtype torch cannot read, or safetensors fails on the file.
            NonFiniteWeightsError: NaN/Inf values and `check_finite`.
        """
        info = self.info(name)
        self._check_open()
        path = self.folder / info.file
        if self._quant is not None and name in self._quant.weights:
            values = self._quant.runs(name, [(0, info.shape[0])], self._read_stored).to(dtype)
        else:
            values = pread_tensor(path, info, torch_dtype(path, info)).to(dtype)
        if check_finite:
            check_finite_values(path, info, values)
        return values

    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Read a tensor as consecutive blocks of whole rows, each at most about `max_bytes`.

        Lets a caller stream a matrix larger than the memory it may use (a 128k-token embedding). Each block
        is mapped from the file (`map_rows`) and valid until the next one is asked for.

        Args:
            name: tensor name.
            max_bytes: bound on one block in `dtype` (at least one row is read).
            dtype: dtype of the blocks; None keeps the stored float dtype (F8 types come as float32), so the
                caller converts where it computes (on the GPU, or block by block in the CPU's cache).
            check_finite: raise if a block holds NaN or Inf.

        Yields:
            `(first_row, block)` pairs covering the tensor in order.
        """
        info = self.info(name)
        self._check_open()
        path = self.folder / info.file
        if self._quant is not None and name in self._quant.weights:
            yield from self._quant_blocks(name, max_bytes, dtype or torch.float32, check_finite)
            return
        source = torch_dtype(path, info)
        dtype = dtype or (source if source in (torch.bfloat16, torch.float16, torch.float32) else torch.float32)
        rows = info.shape[0] if info.shape else 1
        per_row = max(1, info.numel // max(rows, 1)) * torch.empty((), dtype=dtype).element_size()
        step = max(1, max_bytes // per_row)
        if not info.shape:
            yield 0, self.tensor(name, dtype=dtype, check_finite=check_finite)
            return
        fd = open_weights(path)
        try:
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                block = map_rows(path, info, source, (start, stop), fd).to(dtype)
                if check_finite:
                    check_finite_values(path, info, block)
                yield start, block
        finally:
            os.close(fd)

    def rows(
        self,
        name: str,
        index: Sequence[int] | torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:
        """Read the given rows (first-dimension entries) of a tensor, touching only those rows' bytes.

        Sorted unique rows are grouped into contiguous runs, each read with one `get_slice`; the result
        follows `index` (order and repeats kept).

        Args:
            name: tensor name, e.g. `model.embed_tokens.weight`.
            index: row numbers; negative numbers count from the end.
            dtype: dtype of the returned tensor.
            check_finite: raise if the rows read hold NaN or Inf.

        Returns:
            A tensor of shape `(len(index), *shape[1:])`.

        Raises:
            KeyError: no such tensor.
            ValueError: the tensor is a scalar, or `index` is not a one-dimensional list of integers.
            IndexError: a row number out of range.
            CheckpointError, NonFiniteWeightsError: as for `tensor`.
        """
        info, unique, inverse = self._row_index(name, index)
        path = self.folder / info.file
        if self._quant is not None and name in self._quant.weights:
            self._check_open()
            values = self._quant.runs(name, list(_runs(unique.tolist())), self._read_stored)
            if check_finite:
                check_finite_values(path, info, values)
            return values.to(dtype)[inverse]
        handle = self._handle(info)
        pieces = []
        with _safetensors_errors(path, name):
            view = handle.get_slice(name)
            for start, stop in _runs(unique.tolist()):
                pieces.append(view[start:stop])
        raw = torch.cat(pieces) if pieces else torch.empty((0, *info.shape[1:]))
        if check_finite:
            check_finite_values(path, info, raw)
        return raw.to(dtype)[inverse]

    def quantisation_noise(self, name: str, expert: int | None = None) -> torch.Tensor | None:
        """Per row of a quantised weight, the expected squared error its rounding left (float64 [out]; for a stack
        of experts, expert `expert`'s per output); None for a weight stored unquantised."""
        if self._quant is None or name not in self._quant.weights:
            return None
        self._check_open()
        return self._quant.noise(name, self._read_stored, expert)

    def _spans(self, name: str) -> list[tuple[Path, int, int]]:
        """A quantised weight's bytes are its stored parts'."""
        if self._quant is None or name not in self._quant.weights:
            return super()._spans(name)
        infos = [self._stored[part] for part in self._quant.weights[name][1].parts.values()]
        return [(self.folder / info.file, info.start, info.end) for info in infos]

    def _quant_blocks(
        self, name: str, max_bytes: int, dtype: torch.dtype, check_finite: bool
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """A quantised weight dequantised in blocks of rows of about `max_bytes` (in `dtype`); its packed parts
        are read once, whole (a fraction of the float matrix)."""
        info = self.info(name)
        path = self.folder / info.file
        step = max(1, max_bytes // (math.prod(info.shape[1:]) * torch.empty((), dtype=dtype).element_size()))
        for start, block in self._quant.blocks(name, step, self._read_stored):
            block = block.to(dtype)
            if check_finite:
                check_finite_values(path, info, block)
            yield start, block

    def _read_stored(self, name: str, rows: tuple[int, int] | None = None, *, mapped: bool = False) -> torch.Tensor:
        """One stored tensor, as stored (a quantised layer's part): whole, or its first-dimension entries `rows`.

        `mapped`: the tensor over a private mapping of its bytes (`map_rows`), for a part its format only copies
        from (GPTQ's words, transposed once): no copy out of the page cache first.
        """
        self._check_open()
        info = self._stored[name]
        path = self.folder / info.file
        dtype = torch_dtype(path, info)
        if mapped and rows is None and len(info.shape) > 0 and info.end > info.start:
            fd = open_weights(path)
            try:
                return map_rows(path, info, dtype, (0, info.shape[0]), fd)
            finally:
                os.close(fd)  # the mapping keeps the file open as long as it lives
        return pread_tensor(path, info, dtype, rows)

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the cached file handles; the reader cannot read tensors afterwards."""
        for handle in self._handles.values():
            handle.__exit__(None, None, None)
        self._handles.clear()
        self._closed = True

    def __repr__(self) -> str:
        return f"CheckpointReader({self.name!r}: {len(self._infos)} tensors in {len(self.files)} file(s))"

    def _handle(self, info: TensorInfo) -> Any:
        self._check_open()
        path = self.folder / info.file
        torch_dtype(path, info)  # fail with our message before safetensors fails with its own
        if path not in self._handles:
            with _safetensors_errors(path, info.name):
                self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path]


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    return read_json_object(path, CheckpointError, "config is not valid JSON", "re-download it or delete it")


def _merge(headers: dict[Path, FileHeader], located: ModelFiles) -> dict[str, TensorInfo]:
    infos: dict[str, TensorInfo] = {}
    for path in sorted(headers):
        for name, info in headers[path].tensors.items():
            if name in infos:
                raise CheckpointError(
                    path,
                    f"tensor '{name}' is also in '{infos[name].file}': two files hold the same tensor; "
                    "delete the stray file or add a model.safetensors.index.json",
                )
            infos[name] = info
    if located.weight_map is not None and located.index is not None:
        for name, rel in located.weight_map.items():
            info = infos.get(name)
            if info is None or Path(info.file) != Path(rel):
                raise CheckpointError(
                    located.index,
                    f"index 'weight_map' puts tensor '{name}' in '{rel}', but that shard does not "
                    "hold it; the index is stale: re-download the checkpoint",
                )
    return infos


@contextmanager
def _safetensors_errors(path: Path, name: str) -> Iterator[None]:
    """Turn a `SafetensorError` into a one-line `CheckpointError` naming the file and the tensor."""
    try:
        yield
    except SafetensorError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(path, f"safetensors cannot read tensor '{name}' ({detail})") from exc
