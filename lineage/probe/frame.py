"""The weight frame: residual directions a model's own gates define, so unit profiles need no embedding.

The FFN-unit group of the weight test reads each unit's profile on mixtures of the model's anchor embeddings:
the anchors rotate with a rotated model, so the profiles see through a rotation of the residual stream, but
they need the two models to share anchor tokens. A tokenizer transplant to a vocabulary sharing a handful of
tokens, followed by a rotation, leaves no shared anchor and no residual coordinate in place: every group that
reads anchors or coordinates is blind to it.

The frame is made of the model's weights instead: the `FRAME_SIZE` gate rows of largest norm of the first
layer with a dense gated FFN (in a mixture of experts without one, the first router's rows: `frame_source`),
each with the FFN's input-norm gain folded in (`g * gain`, the row as it meets the
normalised residual), scaled to unit length. Every unit of every layer is then profiled on these directions as
on the anchor mixtures (`lineage.probe.circuits`: `frame_gate`, `frame_up`, `frame_down`), and the frame's own
Gram is stored (`frame`) so the test can pair one model's frame directions with the other's
(`lineage.compare.frames`).

Why these directions:
- **They follow every function-preserving map.** A rotation `Q` of the residual stream (norm gains folded
  first) maps each folded gate row `r` to `Q r` and each `down` column `c` to `Q c`, so a profile `r . x` or
  `c . x` on frame directions `x` is unchanged; a neuron permutation, a unit's sign flip (`up` and `down`
  only) and the rescaling of `up` against `down` leave every gate row, so every frame direction, where it was;
  norm-gain rescaling is folded away. No anchor, embedding or head enters.
- **They keep the FFN-unit group's exact null.** The test sums one term per suspect unit, the cosine of its
  `up` and `down` profiles with its partner's; a unit's sign flip negates its own term and nothing else,
  because the frame, the pairing of units and the choice of layers all come from gate rows, which no unit flip
  touches (`lineage.compare.identity`).
- **A fine-tune moves them little.** The rows of largest norm are the FFN's most pronounced readers; a fine-tune
  or a rounding nudges them, and swaps only rows of nearly equal norm, which the Gram pairing absorbs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a model is probed
    import torch

    from lineage.arch import LayerTensors

FRAME_SIZE = 16  # frame directions (the profiles gain FRAME_SIZE columns beside the MIXTURES anchor mixtures)


def frame_source(layers: list[LayerTensors]) -> tuple[LayerTensors, str, bool] | None:
    """`(layer, tensor, fused)`: the gate of the first layer with a dense gated FFN (`fused`: the gate is the first
    half of a `gate_up` tensor); in a mixture of experts whose every layer is routed, the first layer's router
    (no expert's gate: the experts' order is free, so no one expert defines the frame of two models, while the
    router's rows, one an expert, are a set whatever that order, and read the same normalised residual as the
    gates do, without a sign symmetry); None when the model has neither (no gated FFN)."""
    for layer in layers:
        if layer["gate"]:
            return layer, layer["gate"], False
        if layer["gate_up"]:
            return layer, layer["gate_up"], True
    for layer in layers:
        if layer["router"] and layer.experts:
            return layer, layer["router"], False
    return None


def frame_directions(
    blocks: Iterator[tuple[int, torch.Tensor]], rows: int, gain: torch.Tensor | None, count: int = FRAME_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame from a gate streamed in row blocks: `(directions [k, d], gram [k, k])`, `k = min(count, rows)`.

    Args:
        blocks: `(first_row, float32 block)` of the gate (of a fused `gate_up`, every row; those from `rows` on
            are the up half and are skipped).
        rows: how many of the rows are gate rows.
        gain: the FFN's input-norm gain, offset included (None: none).
        count: frame directions to keep.

    Returns:
        The folded rows of largest norm in order of descending norm (ties: the lower row), scaled to unit
        length; and their Gram over the square of their mean norm (cosines scaled by relative norms, what the
        test pairs frames by).
    """
    import torch

    kept: torch.Tensor | None = None  # the folded rows of largest norm seen so far
    norms: torch.Tensor | None = None
    index: torch.Tensor | None = None
    for first, block in blocks:
        if first >= rows:
            break
        block = block[: rows - first].double()
        if gain is not None:
            block = block * gain.double()
        n = block.norm(dim=1)
        ids = torch.arange(first, first + block.shape[0], device=block.device)
        if kept is not None:
            block, n, ids = torch.cat([kept, block]), torch.cat([norms, n]), torch.cat([index, ids])
        # Descending norm, ties by row: a stable sort of (-norm) over rows kept in increasing order.
        order = torch.sort(ids, stable=True).indices
        block, n, ids = block[order], n[order], ids[order]
        top = torch.sort(-n, stable=True).indices[:count]
        kept, norms, index = block[top], n[top], ids[top]
    if kept is None:
        raise ValueError("the gate streamed no rows")
    mean = norms.mean().clamp_min(1e-30)
    gram = kept @ kept.T / mean**2
    return (kept / norms.clamp_min(1e-30)[:, None]).float(), gram.float()
