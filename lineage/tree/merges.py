"""Merges: a model that two or more of its relatives explain together is their child.

A linear merge `sum w_i P_i` (weights summing to 1), task arithmetic `B + sum l_i (P_i - B)` and SLERP lie in
the affine hull of their parents (the base included, for task arithmetic), and TIES and DARE close to it.
The raw weight responses (`Fingerprint.responses`) are linear in the weights, so a merge's responses are the
same combination of its parents'. For each model, non-negative least squares with the weights summing to
one (a heavy row appended) fits its responses on those of its relatives of the same tensor shapes; the
candidates with weight at least `min_weight` are refitted alone. The model is a merge when two to
`max_parents` of them explain it with a residual under `max_ratio` times its distance to the nearest single
relative.

Why this does not take a base for a merge of its fine-tunes: a base `B` with children `B + d_i` (independent
changes of one size `s`) lies at `s / sqrt(k)` from the mean of `k` of them, against `s` from the nearest:
the ratio is `1 / sqrt(k)`, so a base with many children is nearly their average, but each child then
weighs `1 / k`, under `min_weight` once `k` passes `1 / min_weight`, more than `max_parents` weigh more
than it in between, and a subset of at most `max_parents` leaves `1 / sqrt(max_parents)` or more: hence
`max_ratio` 0.4 with `max_parents` 4, a margin under 0.5 for the noise of real changes. A linear merge
leaves 0, task arithmetic and SLERP 0.1-0.2 (the catalog's seed 0); TIES and DARE, which drop part of each
parent's change at random or by magnitude, leave 0.6-0.9, as much as a fine-tune: they are not found, and
join the tree through one parent.
A fine-tune is never the convex combination of its own merges: they all carry their other parents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from lineage.fingerprint import Fingerprint

_SUM_ROW = 1e3  # weight of the appended row that holds the weights' sum at 1


@dataclass(frozen=True)
class MergeFit:
    """A model explained as a merge of others.

    Attributes:
        child: index of the merged model.
        parents: `(index, weight)` of each parent, largest weight first.
        residual: the fit's residual relative to the norm of the model's responses.
        ratio: the residual over the distance to the nearest single relative (0: an exact merge).
    """

    child: int
    parents: tuple[tuple[int, float], ...]
    residual: float
    ratio: float


def _signature(fp: Fingerprint) -> tuple:
    return tuple((k, v.shape) for k, v in sorted(fp.responses.items()))


def _flat(fp: Fingerprint) -> np.ndarray:
    return np.concatenate([fp.responses[k].astype(np.float64).ravel() for k in sorted(fp.responses)])


def _convex_fit(target: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights summing to 1 that best combine `columns` `[D, m]` into `target`, and the residual."""
    a = np.vstack([columns, np.full((1, columns.shape[1]), _SUM_ROW)])
    b = np.concatenate([target, [_SUM_ROW]])
    w, _ = nnls(a, b, maxiter=50 * a.shape[1])
    return w, float(np.linalg.norm(target - columns @ w))


def find_merges(
    fps: Sequence[Fingerprint],
    component: Sequence[int],
    min_weight: float,
    max_parents: int,
    max_ratio: float,
) -> list[MergeFit]:
    """The merges among the models of one component (indices into `fps`); rule in the module docstring."""
    groups: dict[tuple, list[int]] = {}
    for i in component:
        if fps[i].responses:
            groups.setdefault(_signature(fps[i]), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 3:
            continue
        vectors = {i: _flat(fps[i]) for i in members}
        for m in members:
            others = [i for i in members if i != m]
            cols = np.stack([vectors[i] for i in others], axis=1)
            target = vectors[m]
            nearest = min(float(np.linalg.norm(target - vectors[i])) for i in others)
            if nearest == 0.0:
                continue  # an exact copy of a relative is its copy, not a merge
            w, _ = _convex_fit(target, cols)
            chosen = [k for k in np.argsort(-w, kind="stable") if w[k] >= min_weight]
            if not 2 <= len(chosen) <= max_parents:
                continue
            w2, residual = _convex_fit(target, cols[:, chosen])
            ratio = residual / nearest
            if ratio >= max_ratio or min(w2) < min_weight:
                continue
            parents = tuple(sorted(((others[k], float(x)) for k, x in zip(chosen, w2)), key=lambda p: -p[1]))
            out.append(MergeFit(m, parents, residual / float(np.linalg.norm(target)), ratio))
    return out
