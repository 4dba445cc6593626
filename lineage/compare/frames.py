"""Which frame direction of one model is which of the other's: the pairing the frame-unit group reads through.

Each model's weight frame (`lineage.probe.frame`) is its own: the largest-norm gate rows of its first dense FFN,
in order of norm. A derivative's frame is its reference's, moved by any rotation of the residual stream, its
rows in another order wherever a permutation of the units or a fine-tune reordered norms of nearly equal size.
So before unit profiles on the two frames can be compared, the directions are paired, one to one:

1. by what no rotation or reordering changes: each direction's norm and the sorted list of its inner products
   with the other directions (a row of the frame's Gram, `frame`); then
2. refined once on the units themselves: each suspect layer's units are matched to the best reference layer's
   by their gate profiles on the paired frames, and the pairing is redrawn from the agreement of the gate
   profiles' columns over those matches.

Everything here reads gate profiles and the frame's Gram only: a unit's sign flip (its `up` and `down`) leaves
them alone, so the pairing costs the frame-unit group's sign test no correction, like every other choice it
makes (`lineage.compare.identity`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from lineage.compare.widths import unit_rows as _unit_rows

SELECT_UNITS = 64  # units a suspect layer offers to the refinement


def _descriptors(gram: np.ndarray, size: int) -> np.ndarray:
    """`[k, size]` per direction: its squared norm, then its `size - 1` largest inner products with the others."""
    off = np.where(np.eye(len(gram), dtype=bool), -np.inf, gram)
    top = -np.sort(-off, axis=1)[:, : size - 1]
    return np.concatenate([np.diag(gram)[:, None], np.where(np.isfinite(top), top, 0.0)], axis=1)


def pair_frames(gram_a: np.ndarray, gram_b: np.ndarray, gates_a: dict[int, np.ndarray],
                gates_b: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """`(columns of a, columns of b)`: the frame directions paired one to one (as many as the smaller frame has).

    Args:
        gram_a, gram_b: the frames' Grams (`[k, k]`, the fingerprint's `frame`).
        gates_a, gates_b: `{layer: [units, k]}` gate profiles on each model's frame.
    """
    gram_a, gram_b = np.asarray(gram_a, np.float64), np.asarray(gram_b, np.float64)
    size = min(len(gram_a), len(gram_b))
    da, db = _descriptors(gram_a, size), _descriptors(gram_b, size)
    cost = ((da[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    ca, cb = linear_sum_assignment(cost)
    if not (gates_a and gates_b):
        return ca, cb
    # One refinement on the units: column agreement of the gate profiles over each suspect layer's best matches.
    agree = np.zeros((len(gram_a), len(gram_b)))
    refs = [_unit_rows(g[:, cb]) for g in gates_b.values()]
    full_b = list(gates_b.values())
    for g in gates_a.values():
        probe = g[np.unique(np.linspace(0, len(g) - 1, min(len(g), SELECT_UNITS)).round().astype(np.int64))]
        pa = _unit_rows(probe[:, ca])
        best = max(range(len(refs)), key=lambda j: (pa @ refs[j].T).max(1).mean())
        match = (pa @ refs[best].T).argmax(1)
        agree += _unit_rows(probe.T) @ _unit_rows(full_b[best][match].T).T
    return linear_sum_assignment(-agree)
