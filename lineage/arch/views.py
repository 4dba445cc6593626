"""Views: how a logical `[out, in]` tensor is cut out of a stored one (data; `lineage.io.views` reads them).

Some layouts store a matrix transposed (GPT-2's Conv1D, `[in, out]`), every expert of a layer in one tensor
(`[E, ...]`, gpt-oss, Llama 4, Granite-MoE), or the rows of two matrices interleaved (gpt-oss's gate and up,
one row each in turn). The resolved layout names each logical tensor and says how it is read; the probes then
see every layout as plain `[out, in]` matrices.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    """How a logical tensor is read from a stored one.

    Attributes:
        source: the stored tensor's name.
        index: the entry of the first dimension taken (an expert of a stacked tensor), or None.
        transpose: the (indexed) matrix is stored `[in, out]`.
        interleaved: the rows alternate between two matrices (`[a0, b0, a1, b1, ...]`); read as `[a; b]`.
    """

    source: str
    index: int | None = None
    transpose: bool = False
    interleaved: bool = False

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """The logical shape for a stored shape."""
        shape = tuple(stored[1:]) if self.index is not None else tuple(stored)
        return tuple(reversed(shape)) if self.transpose and len(shape) == 2 else shape


def expert_name(source: str, expert: int) -> str:
    """The logical name of expert `expert`'s slice of the stacked tensor `source`."""
    return f"{source}#{expert}"
