"""What every quantised format shares: the logical weight it presents, the base class, the stored tensors.

A quantised layer stores several tensors (`qweight`, `qzeros`, `scales`, `g_idx`; or `weight` and
`weight_scale_inv`; ...). The reader shows the rest of lineage ONE logical `<module>.weight` of the [out, in]
shape the layer computes with, in float32, and hides the parts: the architecture tables and the probes see the
model the quantiser started from, and the bytes read stay the quantised ones. A format implements three steps:
`plan` (names and shapes only, at open time: which parts, what logical shape, every shape checked), `load`
(the parts' values, once per read of the weight: scales checked for NaN, zero points unpacked) and `rows`
(dequantise a block of output rows from what `load` returned). GGUF's reader works the same way with
gguf-py's `dequantize`; here the formulas are the formats' own, each module citing its source.

A format also says how much its rounding moved each row (`noise`): the expected squared error a round to the
nearest stored value leaves, `w^2 / 12` a value (`w` the width of the rounding cell the stored value stands
for: the scale for integers, the gap between neighbouring codes for a codebook or a float format). The verdict
compares it with how far a suspect's responses lie from a reference's (`lineage.compare.quantised`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from lineage.errors import CheckpointError
from lineage.io.header import TensorInfo
from lineage.io.quant.config import QuantConfig

FIX = "the checkpoint is corrupt or was edited; re-download or re-export it"


@dataclass(frozen=True)
class QuantTensorInfo(TensorInfo):
    """A logical weight made from quantised parts: `dtype` names the format (`GPTQ-4bit`, `FP8-E4M3`...),
    `shape` is the logical [out, in], `file` holds the packed weight, `end - start` counts the parts' bytes
    (what reading it costs)."""

    def __post_init__(self) -> None:
        if any(d <= 0 for d in self.shape) or not 0 <= self.start <= self.end:
            raise ValueError(f"invalid shape {self.shape} or byte range [{self.start}, {self.end})")


@dataclass(frozen=True)
class QuantWeight:
    """One quantised layer as the format planned it.

    Attributes:
        name: the logical tensor's name (`model.layers.0.mlp.up_proj.weight`).
        shape: its logical [out, in] shape ([experts, in, out] for a stack of experts stored transposed).
        dtype: the format's label for `Checkpoint.dtypes` (`GPTQ-4bit`).
        parts: role -> stored tensor name (`{"qweight": "...qweight", "scales": "...scales"}`).
        extra: facts read at plan time (bits, a bitsandbytes quant state...).
        hidden: stored tensors read at plan time only (`weight_shape`, a quant state), hidden with the parts.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    parts: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()


class Stored:
    """The checkpoint's stored tensors as a format sees them while planning: header facts, the file that holds
    each (for messages), and a reader of small tensors (`weight_shape`, a bitsandbytes quant state). It also
    lends the formats scratch tensors (`take`, `give`) that outlive one weight."""

    def __init__(
        self, infos: dict[str, TensorInfo], folder: Path, read: Callable[[str], torch.Tensor]
    ) -> None:
        self.infos, self.folder, self._read = infos, folder, read
        self._free: dict[str, torch.Tensor] = {}

    def path(self, name: str) -> Path:
        return self.folder / self.infos[name].file

    def read(self, name: str) -> torch.Tensor:
        return self._read(name)

    def take(self, key: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A 1-D scratch tensor of `numel` values, lent until `give` brings it back: the one given back last,
        reused, where it is large enough (a fresh tensor of several MB for every weight pays the kernel's page
        faults and zeroing each time: about a tenth of dequantising a GPTQ model). One taken and not yet given
        back is never lent twice."""
        free = self._free.pop(key, None)
        if free is None or free.dtype != dtype or free.numel() < numel:
            free = torch.empty(numel, dtype=dtype)
        return free[:numel]

    def give(self, key: str, tensor: torch.Tensor) -> None:
        """Take back a scratch tensor lent by `take`."""
        base = tensor._base if tensor._base is not None else tensor
        if key not in self._free or self._free[key].numel() < base.numel():
            self._free[key] = base.view(-1)


class QuantFormat(ABC):
    """One quantised format: which stored tensors mark a quantised layer, and how to dequantise it.

    Args:
        config: the checkpoint's `quantization_config` (None when config.json has none).
        config_path: config.json, named by messages about the config.
    """

    label: ClassVar[str]  # the name messages give the format
    markers: ClassVar[tuple[str, ...]]  # name suffixes of the one stored tensor that marks a quantised layer
    # Roles of parts that `load` only copies from: the reader maps them instead of copying them out of the page cache.
    mapped: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: QuantConfig | None, config_path: Path) -> None:
        self.config, self.config_path = config, config_path

    def prefixes(self, names: set[str]) -> list[tuple[str, str]]:
        """`(module prefix, marker)` of every quantised layer of this format among `names`, sorted."""
        return sorted((n[: -len(m)], m) for n in names for m in self.markers if n.endswith(m))

    @abstractmethod
    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        """Check the layer's parts by name and shape; return the logical weight (CheckpointError if not)."""

    @abstractmethod
    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        """The parts' values made ready for `rows` (scales checked, zero points unpacked)."""

    @abstractmethod
    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Logical rows `[lo, hi)` dequantised: float32 of shape [hi - lo, in], written into `out` where the format
        can (a buffer the caller reuses block after block), else into a new tensor."""

    def noise(self, weight: QuantWeight, read: Callable[[str], torch.Tensor], stored: Stored) -> torch.Tensor:
        """Per logical row, the expected squared rounding error of its values, summed: float64 [out].

        Reads what it needs through `read` (stored name -> tensor). This default loads every part and asks
        `state_noise`; formats whose cells are their scales (integers) read the scales alone.
        """
        return self.state_noise(weight, self.load(weight, {r: read(s) for r, s in weight.parts.items()}, stored))

    def release(self, state: Any, stored: Stored) -> None:
        """Give back the scratch tensors `load` took (`Stored.take`) once no row of `state` is read any more."""

    def state_noise(self, weight: QuantWeight, state: Any) -> torch.Tensor:
        """`noise` from what `load` returned."""
        raise NotImplementedError(f"{self.label} does not say its rounding noise")

    # -- helpers for the formats ---------------------------------------------------------------------

    def refuse(self, path: Path, problem: str) -> CheckpointError:
        """A one-line error about `path` that names the format."""
        return CheckpointError(path, f"{self.label}: {problem}")

    def part(self, stored: Stored, name: str, dtypes: tuple[str, ...], shape: tuple[int, ...] | None,
             anchor: str) -> TensorInfo:  # fmt: skip
        """The stored part `name`, checked: present, of one of `dtypes`, of `shape` (None: any)."""
        if name not in stored.infos:
            raise self.refuse(stored.path(anchor), f"tensor '{anchor}' has no '{name}' beside it; {FIX}")
        info = stored.infos[name]
        if info.dtype not in dtypes:
            raise self.refuse(
                stored.path(name), f"tensor '{name}' has dtype {info.dtype}, but the format stores it as "
                f"{' or '.join(dtypes)}; {FIX}",
            )  # fmt: skip
        if shape is not None and tuple(info.shape) != tuple(shape):
            raise self.refuse(
                stored.path(name), f"tensor '{name}' has shape {list(info.shape)}, but the layer needs "
                f"{list(shape)}; {FIX}",
            )  # fmt: skip
        return info

    def finite(self, stored: Stored, name: str, values: torch.Tensor) -> torch.Tensor:
        """`values` as stored, refused when a scale holds NaN or Inf."""
        # NaN and Inf propagate into a sum: one reduction clears almost every tensor (a sum that overflows, or a
        # bad value, pays for the count).
        if values.is_floating_point() and values.element_size() > 1 and bool(torch.isfinite(values.sum())):
            return values
        bad = int(values.numel() - torch.isfinite(values.float()).sum())
        if bad:
            raise self.refuse(stored.path(name), f"tensor '{name}' holds {bad} NaN/Inf scales; {FIX}")
        return values


def cell_variances(code: torch.Tensor) -> torch.Tensor:
    """`w^2 / 12` for each value of a codebook (float64, in the code's order): the variance of the rounding error
    of a value that rounded to it, uniform over its cell, which reaches half way to each neighbouring value (an
    end value's outer half mirrors its inner one). Equal values (+0 and -0) share one cell; NaN codes get 0."""
    values = code.double()
    finite = torch.isfinite(values)
    distinct = torch.unique(values[finite])  # sorted
    gaps = distinct.diff()
    if distinct.numel() < 2:
        return torch.zeros_like(values)
    below = torch.cat([gaps[:1], gaps])  # to the lower neighbour (mirrored at the bottom end)
    above = torch.cat([gaps, gaps[-1:]])
    width = (below + above) / 2
    where = torch.searchsorted(distinct, values.nan_to_num(0.0).clamp(distinct[0], distinct[-1]))
    return torch.where(finite, width[where] ** 2 / 12, torch.zeros_like(values))


def row_chunks(rows: int, cols: int, per_rows: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """`per_rows(lo, hi)` ([hi - lo] float64) over every row, a few MB of values at a time, concatenated."""
    step = max(1, (4 << 20) // max(1, cols))
    return torch.cat([per_rows(lo, min(rows, lo + step)) for lo in range(0, rows, step)])


def group_counts(cols: int, size: int) -> torch.Tensor:
    """How many of `cols` inputs each consecutive group of `size` holds (the last may be partial), float64."""
    counts = torch.full((-(-cols // size),), float(size), dtype=torch.float64)
    counts[-1] = cols - size * (counts.numel() - 1)
    return counts


def groups_of(columns: int, group_size: int | None) -> int:
    """How many groups of `group_size` inputs cover `columns` (-1 or None: one group)."""
    return 1 if group_size in (None, -1) else math.ceil(columns / group_size)
