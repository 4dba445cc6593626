"""Unit profiles read in a weight's one streamed pass, on only the units the weight test keeps.

The weight test (`lineage.probe.identity`) reads each value dimension and 1,024 FFN units a layer on a few
anchor mixtures: a *reader* (`v`, `gate`, `up`) gives a unit's response, `mixtures @ W[units].T`; a
*writer* (`o`, `down`) gives a unit's column read from the output side, `vectors @ W[:, units]`. Only the
kept units are needed (1,024 of a 7B model's 11,008 FFN units), so their rows or columns are gathered as
the blocks stream past and met by the vectors in one product at the end, instead of meeting every block
(which would cost about a sixth of all the model's products). Every unit of a reader with `units=None`
rides along in the weight's main product instead (`ProbeEngine.respond`): the `gate` of an FFN wider than
the units kept does, since its responses choose which units are kept (`lineage.probe.identity.profiled_units`)
and the choice is known only once the whole gate has streamed past.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Profiles:
    """What profiles to read from one weight.

    Attributes:
        vectors: `[M, in]` for a reader, `[M, out]` for a writer, on the device.
        side: `"in"` (a reader: `vectors @ W[units].T`) or `"out"` (a writer: `vectors @ W[:, units]`).
        units: sorted int64 row (reader) or column (writer) indices on the device; None for every one.
    """

    vectors: torch.Tensor
    side: str
    units: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.side not in ("in", "out"):
            raise ValueError(f"side must be 'in' or 'out', got {self.side!r}")


class ProfileReader:
    """Accumulates one weight's profiles block by block; `result()` gives them as `[M, units]`.

    A reader with `units=None` is not handled here: its vectors join the weight's main product.
    """

    def __init__(self, profiles: Profiles, shape: tuple[int, int], buffer: torch.Tensor | None = None) -> None:
        """`buffer`: float32 storage on the device for the gathered rows or columns, reused from weight to weight
        (grown by the reader when too small; `self.buffer` is the one to pass next time)."""
        self.p = profiles
        units = profiles.units
        need = 0 if units is None else len(units) * (shape[1] if profiles.side == "in" else shape[0])
        self.buffer = buffer if buffer is not None and buffer.numel() >= need else profiles.vectors.new_empty(need)
        if profiles.side == "in":
            if units is None:
                raise ValueError("a reader of every unit joins the weight's main product, not a ProfileReader")
            self.picked = self.buffer[:need].view(len(units), shape[1])  # the units' rows, gathered
            self.rows = units.tolist()  # where each block's units start and stop, found by bisection
            if self.rows != sorted(set(self.rows)) or (self.rows and not 0 <= self.rows[0] <= self.rows[-1] < shape[0]):
                raise ValueError(f"units must be sorted, unique row indices below {shape[0]}")
            self.gathered = 0
        elif units is None:
            self.sum = profiles.vectors.new_zeros(profiles.vectors.shape[0], shape[1])  # vectors @ W, summed
        else:
            self.picked = self.buffer[:need].view(shape[0], len(units))  # the units' columns, gathered

    def block(self, rows: slice, w: torch.Tensor) -> None:
        """Take in the row block `w` = W[rows] (float32, on the device)."""
        units = self.p.units
        if self.p.side == "in":
            lo, hi = bisect_left(self.rows, rows.start), bisect_left(self.rows, rows.stop)
            if hi > lo:
                self.picked[lo:hi] = w.index_select(0, units[lo:hi] - rows.start)
                self.gathered += hi - lo
        elif units is None:
            self.sum.addmm_(self.p.vectors[:, rows], w)
        else:
            self.picked[rows] = w.index_select(1, units)

    def result(self) -> torch.Tensor:
        """The profiles, `[M, len(units)]` (`[M, in]` for a writer of every unit)."""
        if self.p.side == "in":
            if self.gathered != len(self.rows):  # a block missing from the stream would leave rows unset
                raise ValueError(f"{self.gathered} of {len(self.rows)} units were streamed past")
            return self.p.vectors @ self.picked.T
        return self.sum if self.p.units is None else self.p.vectors @ self.picked
