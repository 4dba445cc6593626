"""The model tree from weights alone: candidates, tested edges, merges, a spanning forest, directions and
relations, as one frozen result.

Steps (each its own module): compact vectors give each model's nearest neighbours (`candidates`); the
candidate pairs are measured and tested in Kruskal's order, and Benjamini-Hochberg at `alpha` runs across
the pairs tested (`edges`); in each connected component of significant pairs the merges are found
(`merges`) and left out of the minimum spanning forest, then attached to their parents; each tree is rooted
where its edges' direction votes agree best (`direction`), a chain whose last model does not carry the middle
one's whole change is re-hung from the first (`chains`), and each edge gets its relation (`relation`).

Example:
    >>> tree = build_tree(fingerprints)  # doctest: +SKIP
    >>> [(e.parent, e.child, e.relation) for e in tree.edges]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from lineage.compare.identity import weight_test
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.store.embed import EmbeddingOptions
from lineage.tree.candidates import DEFAULT_NEIGHBOURS, candidate_pairs, compact_vectors
from lineage.tree.chains import misplaced
from lineage.tree.direction import MIN_MARGIN, basis_votes, edge_votes, orient
from lineage.tree.edges import (
    OTHER_BASES,
    PairTest,
    components,
    copy_originals,
    measure_pairs,
    spanning_forest,
    tested_in_order,
)
from lineage.tree.evidence import pair_facts
from lineage.tree.merges import MergeFit, MergeOptions, find_merges
from lineage.tree.relation import SAME_FUNCTION, relation

DEFAULT_TREE_ALPHA = 0.001
UNDIRECTED = "undirected"
DIRECTED = "directed"


@dataclass(frozen=True)
class TreeOptions:
    """Settings of `build_tree` (every constant chosen on the catalog's seed 0).

    Attributes:
        alpha: Benjamini-Hochberg's level across the pairs tested (the false discovery rate of edges).
        neighbours: nearest neighbours per model that are candidate pairs.
        raw_weight: weight of the raw response distance in an edge's length (`lineage.tree.edges`).
        max_failed: failed tests between two parts of the forest before they are held apart.
        merge: the merge rules (`lineage.tree.merges`).
        embedding: the compact vectors' options.
    """

    alpha: float = DEFAULT_TREE_ALPHA
    neighbours: int = DEFAULT_NEIGHBOURS
    raw_weight: float = 1.0
    max_failed: int = 2
    merge: MergeOptions = field(default_factory=MergeOptions)
    embedding: EmbeddingOptions = field(default_factory=EmbeddingOptions)

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.neighbours < 1 or self.max_failed < 1:
            raise ValueError("neighbours and max_failed must be >= 1")
        if self.raw_weight < 0:
            raise ValueError("raw_weight must be >= 0")


@dataclass(frozen=True)
class TreeEdge:
    """One edge of the tree, from parent to child.

    Attributes:
        parent, child: model names (when `direction` is "undirected", the order is the better guess).
        log10_p: log10 of the weight test's p-value; p_value its float (0.0 below the float range).
        group: the weight test's deciding group.
        distance, raw: sketch and raw response distances.
        relation, relation_evidence: the child's relation to the parent and why.
        direction: "directed" or "undirected"; direction_confidence in [0, 1); direction_evidence: the votes.
        merge_weight: the parent's weight in the merge, when the child is a merge.
    """

    parent: str
    child: str
    log10_p: float
    group: str | None
    distance: float
    raw: float | None
    relation: str
    relation_evidence: str
    direction: str
    direction_confidence: float
    direction_evidence: tuple[str, ...]
    merge_weight: float | None = None

    @property
    def p_value(self) -> float:
        return 10.0**self.log10_p

    @property
    def confidence(self) -> float:
        """The edge's confidence: one minus its p-value."""
        return 1.0 - self.p_value

    def to_dict(self) -> dict:
        return {
            "parent": self.parent, "child": self.child, "p_value": self.p_value, "log10_p": self.log10_p,
            "confidence": self.confidence, "group": self.group, "distance": self.distance, "raw_distance": self.raw,
            "relation": self.relation, "relation_evidence": self.relation_evidence, "direction": self.direction,
            "direction_confidence": self.direction_confidence, "direction_evidence": list(self.direction_evidence),
            "merge_weight": self.merge_weight,
        }  # fmt: skip


@dataclass(frozen=True)
class ModelTree:
    """The recovered forest.

    Attributes:
        names: every model, in the order given.
        edges: the tree edges (a merge has one per parent).
        tested: pairs the weight test ran on; candidates: candidate pairs measured.
        significant: pairs that passed Benjamini-Hochberg.
        alpha: the level.
    """

    names: tuple[str, ...]
    edges: tuple[TreeEdge, ...]
    tested: int
    candidates: int
    significant: int
    alpha: float

    def parents_of(self, name: str) -> list[TreeEdge]:
        return [e for e in self.edges if e.child == name]

    def roots_of(self, name: str) -> list[str]:
        """The roots `name` descends from (itself when it has no parent; several for a merge), following
        every edge whatever its direction confidence."""
        out: list[str] = []
        stack, seen = [name], {name}
        while stack:
            n = stack.pop()
            ups = self.parents_of(n)
            if not ups:
                out.append(n)
            for e in ups:
                if e.parent not in seen:
                    seen.add(e.parent)
                    stack.append(e.parent)
        return sorted(out)

    @property
    def roots(self) -> list[str]:
        return [n for n in self.names if not self.parents_of(n)]

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha, "candidates": self.candidates, "tested": self.tested,
            "significant": self.significant, "edges": [e.to_dict() for e in self.edges],
        }  # fmt: skip


def build_tree(
    fps: Sequence[Fingerprint],
    options: TreeOptions | None = None,
    vectors: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> ModelTree:
    """Recover the forest of `fps` from their weights alone.

    Args:
        fps: fingerprints made by lineage (sketches and identity responses), uniquely named.
        options: settings.
        vectors: their compact vectors (a store's rows, in order); computed when None.
        progress: called with 1 after each weight test.

    Returns:
        The tree.

    Raises:
        ClassificationError: a fingerprint without sketches or identity responses, or two of one name.
    """
    options = options or TreeOptions()
    names = [fp.name for fp in fps]
    if len(set(names)) != len(names):
        raise ClassificationError("two models share a name: name them apart before building a tree")
    for fp in fps:
        if not fp.has_sketches or not fp.identity:
            raise ClassificationError(
                f"'{fp.name}' has no sketches or weight responses (a published feature file?): a tree needs "
                "fingerprints made by lineage from the weights"
            )
    if vectors is None:
        vectors = compact_vectors(fps, options.embedding)
    pairs = candidate_pairs(vectors, options.neighbours)
    measured = measure_pairs(fps, pairs, options.raw_weight)
    done: dict = {}
    tested = tested_in_order(fps, measured, options.alpha, options.max_failed, progress, done=done)
    merges: dict[int, MergeFit] = {}
    originals = copy_originals(fps, measured)
    for comp in components(len(fps), tested):
        if len(comp) >= 3:
            for fit in find_merges(fps, comp, options.merge):
                # A parent that is a near-exact copy stands for its original (the merge holds both's weights).
                ups = tuple((originals.get(i, i), w) for i, w in fit.parents)
                merges[fit.child] = replace(fit, parents=ups)
    if merges:
        tested = tested_in_order(fps, measured, options.alpha, options.max_failed, progress,
                                 frozenset(merges), done)  # fmt: skip
    by_pair = {(p.a, p.b): p for p in tested}
    forest = spanning_forest(len(fps), tested, exclude=set(merges))
    forest += _attach_rest(len(fps), tested, forest, merges)
    known: dict = {}  # each pair's facts and own votes, made once
    forest, notes = _rehang(fps, forest, by_pair, options, known)
    edges = _orient_all(fps, forest, merges, by_pair, notes, known)
    return ModelTree(tuple(names), tuple(edges), len(done), len(tested),
                     sum(p.significant for p in tested), options.alpha)  # fmt: skip


def _attach_rest(n: int, tested: Sequence[PairTest], forest: Sequence[PairTest], merges: dict) -> list[PairTest]:
    """Models left out of the forest that are not merges (a merge's own children) join it by their shortest
    significant pair to a model other than a merge's parent chain; merges are attached by `_orient_all`."""
    joined = {x for p in forest for x in (p.a, p.b)} | set(merges)
    for m, fit in merges.items():
        joined |= {i for i, _ in fit.parents}
    extra = []
    for p in sorted(tested, key=lambda p: p.order):
        if not p.significant:
            continue
        for new, old in ((p.a, p.b), (p.b, p.a)):
            if new not in joined and old in joined:
                extra.append(p)
                joined.add(new)
                break
    return extra


def _orientation(
    fps: Sequence[Fingerprint], forest: Sequence[PairTest], known: dict | None = None
) -> tuple[dict, dict, dict]:
    """Each forest edge's facts, votes and `(parent, child, margin)` (`lineage.tree.direction.orient`); `known`
    keeps each pair's facts and own votes between calls (they do not depend on the rest of the forest)."""
    known = {} if known is None else known
    for p in forest:
        if (p.a, p.b) not in known:
            f = pair_facts(fps[p.a], fps[p.b], p.distance, p.raw)
            known[(p.a, p.b)] = (f, edge_votes(fps[p.a], fps[p.b], f))
    facts = {(p.a, p.b): known[(p.a, p.b)][0] for p in forest}
    votes = {(p.a, p.b): list(known[(p.a, p.b)][1]) for p in forest}
    # Two models of one function in other weight bases whose own facts do not decide: the basis prior.
    undecided = {e for e, v in votes.items() if facts[e].distance < SAME_FUNCTION
                 and (facts[e].raw is None or facts[e].raw >= OTHER_BASES)
                 and abs(sum(w * s for w, s, _ in v)) < MIN_MARGIN}  # fmt: skip
    for e, extra in basis_votes(list(votes), {e: f.raw for e, f in facts.items()}, undecided, OTHER_BASES).items():
        votes[e] = votes[e] + extra
    oriented: dict = {}
    for nodes, edges in _trees(forest):
        oriented.update(orient(nodes, edges, votes)[1])
    return facts, votes, oriented


def _rehang(
    fps: Sequence[Fingerprint], forest: list[PairTest], by_pair: dict[tuple[int, int], PairTest], options: TreeOptions,
    known: dict,
) -> tuple[list[PairTest], dict[tuple[int, int], str]]:  # fmt: skip
    """The forest with every directed chain whose child does not carry its parent's whole change re-hung from
    the grandparent (`lineage.tree.chains`), one at a time (the smallest share first, then oriented again),
    and a note per re-hung edge."""
    notes: dict[tuple[int, int], str] = {}
    for _ in range(len(fps)):
        _, _, oriented = _orientation(fps, forest, known)
        chains = misplaced(fps, {e: (p, c, m >= MIN_MARGIN) for e, (p, c, m) in oriented.items()})
        for share, grand, parent, child in chains:
            key = (min(grand, child), max(grand, child))
            pair = by_pair.get(key) or measure_pairs(fps, [key], options.raw_weight)[0]
            test = pair.test or weight_test(fps[key[1]], fps[key[0]])
            if test.log10_p > math.log10(options.alpha):
                continue
            by_pair[key] = replace(pair, test=test, significant=True)
            old = (min(parent, child), max(parent, child))
            forest = [p for p in forest if (p.a, p.b) != old] + [by_pair[key]]
            notes[key] = (f"hung from {fps[grand].name}, not {fps[parent].name}: it carries {share:.2f} of "
                          f"{fps[parent].name}'s change, a child all of it")  # fmt: skip
            break
        else:
            return forest, notes
    return forest, notes


def _orient_all(
    fps: Sequence[Fingerprint],
    forest: Sequence[PairTest],
    merges: dict[int, MergeFit],
    by_pair: dict[tuple[int, int], PairTest],
    notes: dict[tuple[int, int], str],
    known: dict,
) -> list[TreeEdge]:
    facts, votes, oriented = _orientation(fps, forest, known)
    out: list[TreeEdge] = []
    for e, (parent, child, margin) in oriented.items():
        f = facts[e] if (parent, child) == e else facts[e].swapped()
        rel, why = relation(f)
        if e in notes:
            why = f"{why}; {notes[e]}"
        says = [f"{why_} ({w:.2f})" for w, s, why_ in votes[e] if (s > 0) == ((parent, child) == e)]
        decided = margin >= MIN_MARGIN
        out.append(_edge(fps, by_pair[e], parent, child, rel, why, decided, margin, tuple(says)))
    for m, fit in merges.items():
        for i, w in fit.parents:
            pair = by_pair.get((min(i, m), max(i, m)))
            test = pair.test if pair is not None else None
            f = pair_facts(fps[i], fps[m], pair.distance if pair else math.nan, pair.raw if pair else None)
            _, why = relation(f, merged=True)
            if fit.base is None:
                why = f"{why}: weight {w:.2f}, residual {fit.residual:.3f}"
                says = f"the merge is the child of its parents (residual ratio {fit.ratio:.2f})"
            else:
                why = (f"changes from {fps[fit.base].name} explained together (TIES/DARE): coefficient {w:.2f}, "
                       f"{fit.ratio:.2f} of the change unexplained")
                says = f"the merge is the child of its parents ({fit.ratio:.2f} of its change unexplained)"
            out.append(TreeEdge(
                fps[i].name, fps[m].name, test.log10_p if test else 0.0, test.group if test else None,
                f.distance, f.raw, "merge", why, DIRECTED, 0.99, (says,), w,
            ))  # fmt: skip
    return sorted(out, key=lambda e: (e.parent, e.child))


def _edge(fps, pair: PairTest, parent: int, child: int, rel: str, why: str, decided: bool, margin: float,
          says: tuple[str, ...]) -> TreeEdge:  # fmt: skip # noqa: ANN001
    test = pair.test
    return TreeEdge(
        fps[parent].name, fps[child].name, test.log10_p if test else 0.0, test.group if test else None,
        pair.distance, pair.raw, rel, why, DIRECTED if decided else UNDIRECTED,
        round(margin / (1.0 + margin), 4), says,
    )


def _trees(forest: Sequence[PairTest]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """The trees of a forest: `(nodes, edges)` each."""
    adj: dict[int, set[int]] = {}
    for p in forest:
        adj.setdefault(p.a, set()).add(p.b)
        adj.setdefault(p.b, set()).add(p.a)
    seen: set[int] = set()
    out = []
    for start in sorted(adj):
        if start in seen:
            continue
        comp, stack = {start}, [start]
        while stack:
            for y in adj[stack.pop()]:
                if y not in comp:
                    comp.add(y)
                    stack.append(y)
        seen |= comp
        edges = [(p.a, p.b) for p in forest if p.a in comp]
        out.append((sorted(comp), edges))
    return out
