"""Logical tensors over stored ones: what a layout stores in another shape, read as `[out, in]` matrices.

Some layouts store a matrix transposed (`Conv1D`, `[in, out]`), several matrices in one tensor (experts stacked
along a first dimension, `[E, ...]`), or the rows of two matrices interleaved (gate and up, one row each in turn).
A `lineage.arch.views.View` says how one logical tensor is cut out of a stored one; `ViewedCheckpoint` presents
the views beside the stored tensors through the `Checkpoint` interface, so the probes read every layout as
`[out, in]` matrices and never see a name or a storage quirk. Which views a model needs is the layout's to say
(`lineage.arch`); this module knows no architecture.

A view is read whole (one expert's matrix, one Conv1D matrix) and then served in row blocks: these are the
size of one dense layer's matrix, never the stacked tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import torch

from lineage.arch.views import View
from lineage.io.checkpoint import Checkpoint
from lineage.io.vocab import Vocabulary


def apply_view(view: View, stored: torch.Tensor) -> torch.Tensor:
    """The logical tensor from the stored one (or its indexed entry, when the reader took it already)."""
    x = stored.T if view.transpose and stored.dim() == 2 else stored
    if view.interleaved:
        x = torch.cat([x[0::2], x[1::2]])
    return x.contiguous()


class ViewedCheckpoint(Checkpoint):
    """A checkpoint whose table also holds the logical tensors of `views` (`{logical name: View}`).

    A view may keep its source's name (a transposed matrix read under its own name) or take a new one (an
    expert of a stacked tensor). Counts, dtypes, the header digest and the vocabulary are the stored
    checkpoint's: a view adds no parameter.
    """

    def __init__(self, base: Checkpoint, views: dict[str, View]) -> None:
        self.base, self.views = base, dict(views)
        self.folder, self.name, self.files, self.config = base.folder, base.name, base.files, base.config
        infos = {n: base.info(n) for n in base.names()}
        for name, view in self.views.items():
            src = base.info(view.source)
            share = src.shape[0] if view.index is not None and src.shape else 1
            size = (src.end - src.start) // max(1, share)
            start = src.start + (view.index or 0) * size
            infos[name] = replace(src, name=name, shape=view.shape(tuple(src.shape)), start=start, end=start + size)
        self._infos = infos

    @property
    def num_parameters(self) -> int:
        return self.base.num_parameters

    @property
    def dtypes(self) -> tuple[str, ...]:
        return self.base.dtypes

    def file_of(self, name: str):  # noqa: ANN201 - Path
        view = self.views.get(name)
        return self.base.file_of(view.source if view else name)

    def _read_vocabulary(self) -> Vocabulary | None:
        return self.base.vocabulary

    def header_sha256(self) -> str:
        return self.base.header_sha256()

    def _logical(self, name: str, dtype: torch.dtype | None, check_finite: bool) -> torch.Tensor:
        view = self.views[name]
        kind = dtype or torch.float32
        if view.index is None:
            stored = self.base.tensor(view.source, dtype=kind, check_finite=check_finite)
        else:
            stored = self.base.rows(view.source, [view.index], dtype=kind, check_finite=check_finite)[0]
        return apply_view(view, stored)

    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        if name not in self.views:
            return self.base.tensor(name, dtype=dtype, check_finite=check_finite)
        return self._logical(name, dtype, check_finite)

    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        if name not in self.views:
            yield from self.base.row_blocks(name, max_bytes, dtype=dtype, check_finite=check_finite)
            return
        x = self._logical(name, dtype, check_finite)
        if x.dim() == 0:
            yield 0, x
            return
        per_row = max(1, x[0].numel() * x.element_size())
        step = max(1, max_bytes // per_row)
        for start in range(0, x.shape[0], step):
            yield start, x[start : start + step]

    def quantisation_noise(self, name: str, expert: int | None = None) -> torch.Tensor | None:
        if name not in self.views:
            return self.base.quantisation_noise(name, expert)
        view = self.views[name]
        # A stacked expert's noise comes per output, the rows of its transposed view; a plain matrix's per row,
        # which a transposed view makes columns.
        if view.transpose != (view.index is not None):
            return None
        noise = self.base.quantisation_noise(view.source, view.index)
        return None if noise is None else apply_view(replace(view, transpose=False), noise)

    def rows(
        self, name: str, index: Sequence[int] | torch.Tensor, *, dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:  # fmt: skip
        if name not in self.views:
            return self.base.rows(name, index, dtype=dtype, check_finite=check_finite)
        _, unique, inverse = self._row_index(name, index)
        return self._logical(name, dtype, check_finite)[unique][inverse]

    def prefetch(self, names: Iterable[str]) -> None:
        self.base.prefetch({self.views[n].source if n in self.views else n for n in names})

    def close(self) -> None:
        self.base.close()
