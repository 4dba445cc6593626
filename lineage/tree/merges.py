"""Merges: a model that two or more of its relatives explain together is their child.

The raw weight responses (`Fingerprint.responses`) are linear in the weights, so a merge's responses are the
same combination of its parents' as its weights are. Only relatives in the model's weight basis can be its
parents (the same tensor shapes, raw distance under `OTHER_BASES`: a rotated or permuted copy holds the
same function in other coordinates), and near-exact copies of one model (raw distance under `CAST`: a cast,
an int8 round trip, a renumbered vocabulary) count as one, so they do not share a parent's weight. Two
rules, in turn, per component:

**Exact merges** (linear, task arithmetic, SLERP, metric-weighted): a linear merge `sum w_i P_i` (weights
summing to 1), task arithmetic `B + sum l_i (P_i - B)` and SLERP lie in the affine hull of their parents
(the base included, for task arithmetic). Non-negative least squares with the weights summing to one (a
heavy row appended) fits the model's responses on those of its relatives; the candidates with weight at
least `min_weight` are refitted alone. The model is a merge when two to `max_parents` of them explain it
with a residual under `max_ratio` times its distance to the nearest single relative. A base with children
`B + d_i` (independent changes of one size `s`) lies at `s / sqrt(k)` from the mean of `k` of them, against
`s` from the nearest: with `k <= max_parents` children the ratio is at least `1 / sqrt(max_parents)`, more
children each weigh `1 / k` (more than `max_parents` above `min_weight`, or all under it). Hence
`max_ratio` 0.4 with `max_parents` 4. A linear merge leaves 0, task arithmetic and SLERP 0.1-0.2 (the
catalog's seed 0).

**Sparsified merges** (TIES, DARE): they drop part of each parent's change (`d_i = P_i - B`, from the
parents' base `B`) by magnitude or at random before adding it, so the merge is `B + sum c_i d_i + n`, the
dropped part `n` as large as what is kept (DARE at density 0.5): 0.6-0.9 of the exact rule's ratio, no
better than a fine-tune's. What tells them apart is the base. For every relative `B` the model could be
made from, the model's task vector `t = M - B` is regressed (non-negative least squares) on its relatives'
`T_i = P_i - B`; the model is a merge of the two to `max_parents` parents with coefficient at least
`min_coefficient` when the best base leaves under `max_unexplained` of `|t|^2` unexplained, and:

* the base is an ancestor of the model and of every parent: training adds a change nearly orthogonal to
  the model it starts from, so `growth(B -> X) = (|X|^2 - |B|^2) / |X - B|^2` is about +1 for a descendant
  (the catalog's fine-tunes on seeds 0-2: 0.51-2.2, under 1 where training shrank the weights), at most 1 in
  size for a sibling, about -1 for an ancestor (-0.51 to -2.2). Each parent's growth from the base is at least
  `min_parent_growth` 0 (it grew: no ancestor of the base does), the model's at least `min_growth` 0.4: a
  plain fine-tune with a smaller sibling as base then leaves at least `(1 + min_growth) / 2` = 0.7 of `|t|^2`
  unexplained, over `max_unexplained` (both were 0.6 until seed 2, whose Mistral instruct model grew 0.51
  from its base and its TIES merge 0.68: the merge was missed);
* the base is the parents' *nearest* common ancestor: no other relative's change from it is carried (a
  projection `<T, T_x> / |T_x|^2` of at least `max_carried`) by the model and every parent alike (from a
  grandparent, the siblings of a model explain it together: they all carry their parent's change);
* the parents are not in one line: no parent carries another's whole change (a chain `P -> M -> C` puts
  `M` between its parent and its child);
* not every parent carries the model's whole change: a model is nearly the average of its own children
  (`T_i = t + c_i`, each `<T_i, t> / |t|^2` about 1), while a merge keeps only part of each parent's change
  (`c_i |d_i|^2 / |t|^2`, the smallest 0.05-0.42 on seed 0): the smallest must be under `max_carried` 0.6.

On the catalog's seed 0 the four TIES and DARE merges leave 0.19-0.46 of their change unexplained, with
coefficients 0.31-0.78 (`max_unexplained` 0.6, `min_coefficient` 0.2). Sparsified merges are taken best
explained first; a model found to be a merge is no longer a candidate parent or base of the rest (a
fine-tune is otherwise the average of its merge and its base). TIES and DARE at low density (most of each
change dropped, as DARE is often run) leave more unexplained than a fine-tune does and are not found, and
a fine-tune of a fine-tune trained on a sibling's data could pass for a merge of its parent and that
sibling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from lineage.fingerprint import Fingerprint
from lineage.tree.edges import OTHER_BASES
from lineage.tree.evidence import CAST

_SUM_ROW = 1e3  # weight of the appended row that holds the weights' sum at 1


@dataclass(frozen=True)
class MergeOptions:
    """The merge rules' constants (chosen on the catalog's seed 0, the growths on seeds 0-2; rules in the
    module docstring).

    Attributes:
        min_weight: exact merges: the least weight of a parent.
        max_parents: the most parents of one merge.
        max_ratio: exact merges: the residual over the distance to the nearest relative.
        min_coefficient: sparsified merges: the least coefficient of a parent's task vector.
        max_unexplained: sparsified merges: the share of the task vector's energy left unexplained.
        min_growth: sparsified merges: the least growth from the base to the model.
        min_parent_growth: sparsified merges: the least growth from the base to each parent.
        max_carried: sparsified merges: the projection from which one change carries another.
    """

    min_weight: float = 0.05
    max_parents: int = 4
    max_ratio: float = 0.4
    min_coefficient: float = 0.2
    max_unexplained: float = 0.6
    min_growth: float = 0.4
    min_parent_growth: float = 0.0
    max_carried: float = 0.6

    def __post_init__(self) -> None:
        if self.max_parents < 2 or not 0 < self.min_weight < 0.5 or not 0 < self.min_coefficient < 1:
            raise ValueError("merge max_parents must be >= 2, min_weight in (0, 0.5), min_coefficient in (0, 1)")
        if not all(0 < x <= 1 for x in (self.max_ratio, self.max_unexplained, self.max_carried)):
            raise ValueError("merge max_ratio, max_unexplained and max_carried must be in (0, 1]")


@dataclass(frozen=True)
class MergeFit:
    """A model explained as a merge of others.

    Attributes:
        child: index of the merged model.
        parents: `(index, weight)` of each parent, largest weight first.
        residual: the fit's residual relative to the norm of the model's responses.
        ratio: exact merges: the residual over the distance to the nearest single relative (0: exact);
            sparsified ones: the share of the task vector from `base` left unexplained.
        base: the base whose task vectors explain a sparsified merge (None for an exact one).
    """

    child: int
    parents: tuple[tuple[int, float], ...]
    residual: float
    ratio: float
    base: int | None = None

    @property
    def kind(self) -> str:
        return "exact" if self.base is None else "sparsified"


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


def _fit(target: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative coefficients that best combine `columns` into `target`, and the residual."""
    w, _ = nnls(columns, target, maxiter=50 * columns.shape[1])
    return w, float(np.linalg.norm(target - columns @ w))


def growth(a: np.ndarray, b: np.ndarray) -> float:
    """`(|b|^2 - |a|^2) / |b - a|^2`: about +1 when `b` is `a` plus an orthogonal change (0 for a copy)."""
    d2 = float(((b - a) ** 2).sum())
    return float(b @ b - a @ a) / d2 if d2 > 0 else 0.0


class _Group:
    """The models of one weight basis in one component: responses, distances, copies."""

    def __init__(self, members: list[int], vectors: dict[int, np.ndarray]) -> None:
        self.members = members
        self.v = vectors
        norms = {i: float(np.linalg.norm(vectors[i])) for i in members}
        self.dist = {(i, j): float(np.linalg.norm(vectors[i] - vectors[j])) / max(1e-30, (norms[i] * norms[j]) ** 0.5)
                     for i in members for j in members}  # fmt: skip
        # Near-exact copies count as one: each model's copy group is named by its first member.
        self.copy_of: dict[int, int] = {}
        for i in members:
            heads = (j for j in members if j < i and self.dist[(i, j)] < CAST and self.copy_of[j] == j)
            self.copy_of[i] = next(heads, i)

    def relatives(self, m: int, excluded: set[int]) -> list[int]:
        """One model per copy group, in `m`'s weight basis, not `m`'s copy, none of `excluded`."""
        out = []
        for i in self.members:
            if self.copy_of[i] != i or i in excluded or self.copy_of[m] == i:
                continue
            if CAST <= self.dist[(m, i)] < OTHER_BASES:
                out.append(i)
        return out


def _exact(g: _Group, m: int, options: MergeOptions) -> MergeFit | None:
    others = g.relatives(m, set())
    if len(others) < 2:
        return None
    cols = np.stack([g.v[i] for i in others], axis=1)
    target = g.v[m]
    nearest = min(float(np.linalg.norm(target - g.v[i])) for i in others)
    w, _ = _convex_fit(target, cols)
    chosen = [k for k in np.argsort(-w, kind="stable") if w[k] >= options.min_weight]
    if not 2 <= len(chosen) <= options.max_parents:
        return None
    w2, residual = _convex_fit(target, cols[:, chosen])
    ratio = residual / nearest
    if ratio >= options.max_ratio or min(w2) < options.min_weight:
        return None
    parents = tuple(sorted(((others[k], float(x)) for k, x in zip(chosen, w2)), key=lambda p: -p[1]))
    return MergeFit(m, parents, residual / float(np.linalg.norm(target)), ratio)


def _sparsified(g: _Group, m: int, merges: set[int], options: MergeOptions) -> MergeFit | None:
    """The best-explained sparsified merge `m` could be (None when no base passes the rule)."""
    rel = g.relatives(m, merges)
    best: MergeFit | None = None
    for b in rel:
        if growth(g.v[b], g.v[m]) < options.min_growth:
            continue
        cands = [p for p in rel if p != b and g.dist[(b, p)] < OTHER_BASES
                 and growth(g.v[b], g.v[p]) >= options.min_parent_growth]  # fmt: skip
        if len(cands) < 2:
            continue
        t = g.v[m] - g.v[b]
        cols = np.stack([g.v[p] - g.v[b] for p in cands], axis=1)
        c, _ = _fit(t, cols)
        chosen = [k for k in np.argsort(-c, kind="stable") if c[k] >= options.min_coefficient]
        if not 2 <= len(chosen) <= options.max_parents:
            continue
        c2, residual = _fit(t, cols[:, chosen])
        tt = float(t @ t)
        unexplained = residual**2 / tt
        if min(c2) < options.min_coefficient or unexplained >= options.max_unexplained:
            continue
        if min(float(cols[:, k] @ t) / tt for k in chosen) >= options.max_carried or _in_line(cols[:, chosen], options):
            continue
        line = [t] + [cols[:, k] for k in chosen]
        others = [x for x in rel if x != b and x not in {cands[k] for k in chosen}]
        if any(_carried_by_all(g.v[x] - g.v[b], line, options) for x in others):
            continue  # a relative nearer than `b` is the common ancestor: from it, the changes are others
        if best is None or unexplained < best.ratio:
            parents = tuple(sorted(((cands[k], float(x)) for k, x in zip(chosen, c2)), key=lambda p: -p[1]))
            best = MergeFit(m, parents, residual / float(np.linalg.norm(g.v[m])), unexplained, b)
    return best


def _carried_by_all(tx: np.ndarray, changes: list[np.ndarray], options: MergeOptions) -> bool:
    """Whether every change carries the change `tx` of a relative `x` (from the base): `x` is then a common
    ancestor of them all nearer than the base."""
    xx = float(tx @ tx)
    return xx > 0 and all(float(c @ tx) / xx >= options.max_carried for c in changes)


def _in_line(cols: np.ndarray, options: MergeOptions) -> bool:
    """Whether one parent's change from the base carries another's whole change (`T_j = T_i + ...`: a
    descendant of it)."""
    gram = cols.T @ cols
    k = gram.shape[0]
    return any(gram[i, j] / gram[j, j] >= options.max_carried for i in range(k) for j in range(k) if i != j)


def find_merges(fps: Sequence[Fingerprint], component: Sequence[int], options: MergeOptions) -> list[MergeFit]:
    """The merges among the models of one component (indices into `fps`); rules in the module docstring.

    A merge's parent is named by the first model of its copy group; `lineage.tree.build` renames it to the
    group's original."""
    groups: dict[tuple, list[int]] = {}
    for i in component:
        if fps[i].responses:
            groups.setdefault(_signature(fps[i]), []).append(i)
    out: list[MergeFit] = []
    for members in groups.values():
        if len(members) < 3:
            continue
        g = _Group(sorted(members), {i: _flat(fps[i]) for i in members})
        found: dict[int, MergeFit] = {}
        exact = [f for m in g.members if g.copy_of[m] == m and (f := _exact(g, m, options)) is not None]
        for fit in sorted(exact, key=lambda f: (f.ratio, f.child)):  # the best explained first
            # Two models that would each be the other's merge parent: the better explained one is the merge.
            if not any(fit.child in {i for i, _ in found[p].parents} for p, _ in fit.parents if p in found):
                found[fit.child] = fit
        while True:
            fits = [f for m in g.members if g.copy_of[m] == m and m not in found
                    and (f := _sparsified(g, m, set(found), options)) is not None]  # fmt: skip
            if not fits:
                break
            fit = min(fits, key=lambda f: (f.ratio, f.child))
            found[fit.child] = fit
        out += found.values()
    return out
