"""Edges of the tree: which candidate pairs share weights (the weight test, Benjamini-Hochberg across the
pairs tested), and which of those the tree keeps (a minimum spanning forest).

**Lengths.** Every relative of a family shares its root's coordinates, so the weight test links a base to
its grandchildren and its fine-tunes to each other as surely as to their parent: significance says *who is
related*, not *who is whose parent*. A derivative is nearest its parent, so the tree is the minimum spanning
forest of the significant pairs (as MoTHer, Horwitz et al., ICLR 2025, builds it), under a length of two
parts: the sketch distance (`lineage.compare.similarity`: what the models compute; a disguise is at 0 from
its parent), plus `raw_weight` times the distance of the raw weight responses (linear in the weights, the
same tensor shapes only, else `RAW_FAR`). The second part breaks the ties the first leaves: a quantised copy
of a disguised model computes what its parent and its grandparent both compute, but only its parent has
its very weights.

**Tests in Kruskal's order.** Pairs are taken shortest first; a pair whose two models the forest already
joins is not tested (the forest would not take it), so a family of `m` models costs about `m - 1` tests,
not `m^2 / 2`. The forest is grown twice: over every model, then without the merges found in its components
(a merge is nearer each parent than they are to each other, so the first forest goes through it), reusing
the tests already run. Two parts of the forest whose `max_failed` shortest pairs all failed are held apart without
testing the rest (they are unrelated families, or their relation is carried by a shorter pair). Every p-value
then goes through Benjamini-Hochberg at `alpha` over all the pairs tested, and the forest is rebuilt from
the pairs that pass it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from lineage.compare.identity import WeightTest, weight_test
from lineage.compare.similarity import sketch_distance_matrix
from lineage.decide.fdr import benjamini_hochberg_log10
from lineage.fingerprint import Fingerprint
from lineage.tree.evidence import CAST, anchors_moved, grid_of
from lineage.tree.relation import precision

#: The raw distance given to two models whose raw responses do not compare (other tensor shapes): that of
#: unrelated weights, `sqrt(2)` (two independent vectors of one norm).
RAW_FAR = math.sqrt(2.0)
#: Added to the length of two models whose vocabularies are numbered apart (another size, or shared tokens at
#: other ids): a vocabulary-permuted copy has its parent's very weights, so without it the two tie, and the
#: parent's children, which keep the parent's numbering, could hang from the copy.
RENUMBERED = 1e-3
#: A raw distance from which two models are in other weight bases (disguised: MergeLock alone moves them
#: about 1 apart, a rotation about `sqrt(2)`; a merged LoRA adapter, the largest change within one basis in
#: the catalog, 0.86): beyond it the value is noise around `RAW_FAR`, and ties are left to the sketches.
OTHER_BASES = 0.95
#: Length under which two models are near relatives in one weight basis (a fine-tune and its base: 0.2-0.5).
NEAR = 0.6
#: Added to the length of a pair that joins a near-exact copy (raw distance under `CAST`: a cast, an int8 round
#: trip) to a model other than its original. A copy is as near its original's relatives as the original is, to
#: within its own distance from it (under `CAST`), so without it the tree hangs them from either at random; what
#: was made from a copy holds its original's weights as well.
COPY = 2 * CAST


@dataclass(frozen=True)
class PairTest:
    """One candidate pair, tested or not.

    Attributes:
        a, b: indices of the two models, `a < b`.
        distance: their sketch distance.
        raw: the distance of their raw weight responses (relative to the geometric mean of their norms);
            None when their tensors differ in shape.
        length: the edge length the forest minimises.
        test: the weight test of `b` against `a`; None when the pair was not tested.
        significant: whether it passed Benjamini-Hochberg across the pairs tested.
        ties: how pairs of equal length are ordered (`order`): minus the two models' near relatives, so a
            model's disguised copies hang from the model with relatives of its own, not from each other.
    """

    a: int
    b: int
    distance: float
    raw: float | None
    length: float
    test: WeightTest | None = None
    significant: bool = False
    ties: int = 0

    @property
    def order(self) -> tuple:
        """Kruskal's order: shortest first, then ties broken (`ties`), then by index."""
        return (round(self.length, 6), self.ties, self.a, self.b)

    @property
    def log10_p(self) -> float | None:
        return None if self.test is None else self.test.log10_p


def raw_distance(a: Fingerprint, b: Fingerprint) -> float | None:
    """`||r_a - r_b|| / sqrt(||r_a|| ||r_b||)` of the raw responses (`Fingerprint.responses`), None when the two
    do not hold the same tensors of the same shapes: 0 for a copy, about `sqrt(2)` for unrelated weights."""
    keys = sorted(a.responses)
    if not keys or keys != sorted(b.responses) or any(a.responses[k].shape != b.responses[k].shape for k in keys):
        return None
    x = np.concatenate([a.responses[k].astype(np.float64).ravel() for k in keys])
    y = np.concatenate([b.responses[k].astype(np.float64).ravel() for k in keys])
    scale = math.sqrt(float(np.linalg.norm(x)) * float(np.linalg.norm(y)))
    return float(np.linalg.norm(x - y)) / scale if scale > 0 else None


def _renumbered(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether the two hold their vocabularies in other sizes or their shared anchor tokens at other ids."""
    if a.summary is not None and b.summary is not None and a.summary.vocab_size != b.summary.vocab_size:
        return True
    return anchors_moved(a, b)


def _permuted(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether the two hold vocabularies of one size with shared anchor tokens at other ids (a permutation)."""
    same_size = a.summary is None or b.summary is None or a.summary.vocab_size == b.summary.vocab_size
    return same_size and anchors_moved(a, b)


def _copy_side(a: Fingerprint, b: Fingerprint) -> int:
    """Which of two near-exact copies (same decoder shapes, no permuted vocabulary) is the copy: +1 for `b`, -1
    for `a`, 0 when nothing tells. The one stored in fewer bits is the cast; else the one with fewer tokens (rows
    dropped, nothing trained: a trimmed vocabulary, as `lineage.tree.direction` reads it); else the one whose
    values lie on the coarser quantisation grid (`lineage.tree.evidence.grid_of`: an int8 round trip stored in
    its original's dtype); else rounding added noise nearly orthogonal to the weights, so the copy is the larger
    (`lineage.tree.evidence` on growth). That last call is weak: at an int8 round trip's raw distance (0.005) the
    noise's own energy is smaller than its chance overlap with the weights' responses, so it is right about half
    the time."""
    pa = precision(a.summary.dtypes) if a.summary else None
    pb = precision(b.summary.dtypes) if b.summary else None
    if pa is not None and pb is not None and pa != pb:
        return 1 if pb < pa else -1
    va = a.summary.vocab_size if a.summary else None
    vb = b.summary.vocab_size if b.summary else None
    if va is not None and vb is not None and va != vb:
        return 1 if vb < va else -1
    ga, gb = grid_of(a), grid_of(b)
    if ga != gb:  # a model on no grid counts as the finest
        return 1 if (gb or math.inf) < (ga or math.inf) else -1
    keys = sorted(a.responses)
    xa = sum(float((a.responses[k].astype(np.float64) ** 2).sum()) for k in keys)
    xb = sum(float((b.responses[k].astype(np.float64) ** 2).sum()) for k in keys)
    return 0 if xa == xb else (1 if xb > xa else -1)


def copy_originals(fps: Sequence[Fingerprint], measured: Sequence[PairTest]) -> dict[int, int]:
    """copy -> its original, for the measured pairs of near-exact copies (raw distance under `CAST`, no
    permuted vocabulary), followed to the first original.

    A trimmed vocabulary is such a copy, the smaller one (seed 2 of the catalog: with tokens gone, the copy's
    sketch distances to its original's relatives differ from the original's by more than `RENUMBERED`, and the
    original's parent hung from the copy); a permuted one is not (nothing tells which side is the copy:
    `RENUMBERED` keeps the two apart)."""
    parent: dict[int, int] = {}
    for p in sorted(measured, key=lambda p: (p.raw if p.raw is not None else math.inf, p.a, p.b)):
        if p.raw is None or p.raw >= CAST or _permuted(fps[p.a], fps[p.b]):
            continue
        side = _copy_side(fps[p.a], fps[p.b])
        if side == 0:
            continue
        copy, original = (p.b, p.a) if side > 0 else (p.a, p.b)
        if copy not in parent and _top(parent, original) != copy:
            parent[copy] = original
    return {c: _top(parent, c) for c in parent}


def _top(parent: dict[int, int], i: int) -> int:
    while i in parent:
        i = parent[i]
    return i


def measure_pairs(
    fps: Sequence[Fingerprint], pairs: Sequence[tuple[int, int]], raw_weight: float
) -> list[PairTest]:
    """Distances and lengths of the candidate pairs (sketch distances one model's neighbours at a time)."""
    by_first: dict[int, list[int]] = {}
    for i, j in pairs:
        by_first.setdefault(i, []).append(j)
    out = []
    for i, js in by_first.items():
        dist = sketch_distance_matrix([fps[i]], [fps[j] for j in js])[0]
        for j, d in zip(js, dist):
            raw = raw_distance(fps[i], fps[j])
            far = raw is None or raw >= OTHER_BASES
            length = float(d) + raw_weight * (RAW_FAR if far else raw)
            length += RENUMBERED * _renumbered(fps[i], fps[j])
            out.append(PairTest(i, j, float(d), raw, length))
    originals = copy_originals(fps, out)
    for k, p in enumerate(out):
        if any(c in originals and originals[c] != o for c, o in ((p.a, p.b), (p.b, p.a))):
            out[k] = replace(p, length=p.length + COPY)
    near: dict[int, int] = {}
    for p in out:
        if p.length < NEAR:
            near[p.a] = near.get(p.a, 0) + 1
            near[p.b] = near.get(p.b, 0) + 1
    out = [replace(p, ties=-(near.get(p.a, 0) + near.get(p.b, 0))) for p in out]
    return sorted(out, key=lambda p: p.order)


class _Forest:
    """Union-find over model indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        self.parent[max(ri, rj)] = min(ri, rj)
        return True


def tested_in_order(
    fps: Sequence[Fingerprint],
    measured: Sequence[PairTest],
    alpha: float,
    max_failed: int,
    progress: Callable[[int], None] | None = None,
    exclude: frozenset[int] = frozenset(),
    done: dict[tuple[int, int], WeightTest] | None = None,
) -> list[PairTest]:
    """Run the weight test on the pairs a spanning forest could take, shortest first (rule in the module
    docstring), then Benjamini-Hochberg at `alpha` across every pair tested.

    Args:
        fps, measured: the fingerprints and their measured candidate pairs, shortest first.
        alpha: the level, per test while the forest grows and for Benjamini-Hochberg after.
        max_failed: failed tests between two parts of the forest before they are held apart.
        progress: called with 1 after each test run.
        exclude: models the forest leaves out (merges: they join their parents later).
        done: tests already run, by pair; the new ones are added to it.

    Returns:
        Every measured pair, in order, with its test (None when never tested) and significance.
    """
    done = {} if done is None else done
    forest = _Forest(len(fps))
    failed: dict[tuple[int, int], int] = {}
    level = math.log10(alpha)
    for pair in measured:
        if pair.a in exclude or pair.b in exclude:
            continue
        ra, rb = forest.find(pair.a), forest.find(pair.b)
        key = (min(ra, rb), max(ra, rb))
        if ra == rb or failed.get(key, 0) >= max_failed:
            continue
        test = done.get((pair.a, pair.b))
        if test is None:
            test = done[(pair.a, pair.b)] = weight_test(fps[pair.b], fps[pair.a])
            if progress is not None:
                progress(1)
        if test.log10_p <= level:
            forest.union(pair.a, pair.b)
        else:
            failed[key] = failed.get(key, 0) + 1
    tests = [done.get((p.a, p.b)) for p in measured]
    passed = benjamini_hochberg_log10([None if t is None else t.log10_p for t in tests], alpha)
    return [replace(p, test=t, significant=ok) for p, t, ok in zip(measured, tests, passed)]


def spanning_forest(n: int, pairs: Sequence[PairTest], exclude: set[int] = frozenset()) -> list[PairTest]:
    """Kruskal's minimum spanning forest over the significant pairs, models in `exclude` left out."""
    forest = _Forest(n)
    return [p for p in sorted(pairs, key=lambda p: p.order)
            if p.significant and p.a not in exclude and p.b not in exclude and forest.union(p.a, p.b)]  # fmt: skip


def components(n: int, pairs: Sequence[PairTest]) -> list[list[int]]:
    """The connected components of the significant pairs (sorted lists of indices, singletons included)."""
    forest = _Forest(n)
    for p in pairs:
        if p.significant:
            forest.union(p.a, p.b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(forest.find(i), []).append(i)
    return sorted(groups.values())
