"""Which of two related models is the parent: evidence per edge, then one root per tree.

Each edge gets the votes its own facts give (`edge_votes`), each `(weight, says)`: `says` is +1 when the
facts say `b` is the child of `a`, -1 for the reverse, and `weight` is how sure the rule is.

* **Depth**: the deeper model is the up-scaled child when some of its layers repeat (two of its layers
  whose sketches correlate above `DUPLICATE_LAYERS`: SOLAR-style up-scaling copies layers), else the
  shallower one is the pruned child.
* **Width**: the narrower model is the pruned child.
* **Vocabulary size**: with the weights otherwise the same, the smaller vocabulary is the trimmed child (rows
  dropped); with the weights trained too, the larger is the extended child (weak: the reverse happens).
* **Stored precision**: with the weights otherwise the same (a cast), the model stored in fewer bits.
* **Quantisation grid**: with the weights otherwise the same up to what rounding moves
  (`lineage.tree.evidence.rounded_side`), the model whose values lie on the coarser grid is the rounded copy,
  whatever dtype it is stored in (a dequantised int8 copy stored as its original was).
* **Growth of the weights** (`PairFacts.growth`, raw responses): training adds a change nearly orthogonal to
  the parent, so the child's weights are the larger, by the change's own energy; abliteration projects a
  direction out of the residual writers (`o`, `down`: the only tensors it changes), so the child is the
  smaller. A copy that kept its embedding with a small change (quantised, pruned) gives a weak vote (0.3):
  rounding adds noise and pruning removes weight, mirror images that the raw responses alone cannot tell
  apart, so the quantisation grid tells: with neither side on one the change is no rounding and the smaller
  is the pruned child, else the larger is the rounded one (seed 2: a pruned fine-tune's edge was reversed and
  called quantized); the rest of the tree may outvote it. The vote's weight grows with `|growth|`: 1 for a
  clean `+-1`.
* **Disguise**: a model that computes its relative's very function in another weight basis (a rotation,
  MergeLock maps, rescaled norms) was made from it. A rotation changes the embedding: the rotated side's
  embedding energy is spread more unevenly over the kept residual coordinates. Rescaled norm gains change
  only the projections that read the residual stream, and grow them. MergeLock's per-head invertible maps
  change the value and output projections and raise TensorGuard's gradient kurtosis (`global_kurtosis`),
  which then decides; a neuron permutation of the FFN changes no head and leaves every statistic as it was
  (its kurtosis differs by sampling alone: 4% on the catalog's seed 1, which directed it the wrong way before
  this rule), so its own facts do not direct it.
* **The basis others built in** (`basis_votes`, the tree's, not the edge's): of two models of one function in
  other weight bases whose own facts do not tell (a pure neuron permutation), the one with relatives in its
  own basis is the original. This is a prior, not a measurement: a disguise is made to hide a model, and its
  relatives were built from the model in their basis, so a copy that nothing was built from is the likelier
  child. Its weight (`BUILT_ON`) is under any measured vote's.

`orient` then picks, per tree, the root that agrees best with the weighted votes of every edge (rerooting:
moving the root across an edge flips that edge alone); merge edges point at the merge whatever the root.
An edge whose orientation the votes do not decide by at least `MIN_MARGIN` is "undirected".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from lineage.fingerprint import Fingerprint
from lineage.tree.evidence import CAST, UNCHANGED, PairFacts, rounded_side
from lineage.tree.relation import ADAPTER_CHANGE, OTHER_BASIS, SAME_FUNCTION, precision

#: Correlation of two layers' sketches above which they are copies of one layer (up-scaling).
DUPLICATE_LAYERS = 0.98
#: The least total vote, in favour of one orientation over the other, that decides an edge.
MIN_MARGIN = 0.25
#: Tensor kinds that MergeLock's per-head maps change (the value and output projections, fused or not).
HEAD_MAPPED = frozenset({"v", "o", "qkv"})
#: Tensor kinds that read the residual stream (after a norm): a norm-gain rescaling changes these alone.
READERS = frozenset({"q", "k", "v", "gate", "up", "qkv", "gate_up"})

#: The weight of the basis prior (`basis_votes`): enough to direct an edge nothing else directs, less than a
#: disguise's own evidence (2) or any structural vote (3).
BUILT_ON = 0.5

Vote = tuple[float, int, str]  # (weight, +1: b child / -1: a child, why)


def duplicated_layers(fp: Fingerprint) -> bool:
    """Whether two layers of the model have (nearly) the same sketches in every layer circuit."""
    sk = [np.asarray(fp.sketches[c], dtype=np.float64) for c in ("qk", "vo", "ffn") if c in fp.sketches]
    if not sk or sk[0].shape[0] < 2:
        return False
    flat = np.concatenate([s.reshape(s.shape[0], -1) for s in sk], axis=1)
    flat = flat - flat.mean(1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    flat = flat / np.where(norms > 0, norms, 1.0)
    corr = flat @ flat.T
    np.fill_diagonal(corr, -1.0)
    return bool(corr.max() > DUPLICATE_LAYERS)


def edge_votes(a: Fingerprint, b: Fingerprint, facts: PairFacts) -> list[Vote]:
    """The votes of one edge's own facts (see the module docstring)."""
    votes: list[Vote] = []
    (la, lb), (ha, hb), (va, vb) = facts.layers, facts.hidden, facts.vocab
    if la is not None and lb is not None and la != lb:
        deep, says = (b, 1) if lb > la else (a, -1)
        if duplicated_layers(deep):
            votes.append((3.0, says, "the deeper model repeats layers: up-scaled"))
        else:
            votes.append((3.0, -says, "the shallower model holds a subset of the layers: pruned"))
    if ha is not None and hb is not None and ha != hb:
        votes.append((3.0, 1 if hb < ha else -1, "the narrower model is the pruned one"))
    if va is not None and vb is not None and va != vb:
        if facts.raw is not None and facts.raw < CAST:  # rows dropped, nothing trained: a trimmed vocabulary
            votes.append((1.0, 1 if vb < va else -1, "the same weights with fewer tokens: trimmed"))
        else:
            votes.append((0.5, 1 if vb > va else -1, "the larger vocabulary is the extended one"))
    pa, pb = precision(facts.dtypes[0]), precision(facts.dtypes[1])
    if pa is not None and pb is not None and pa != pb and facts.raw is not None and facts.raw < CAST:
        votes.append((3.0, 1 if pb < pa else -1, "the same weights stored in fewer bits: the cast"))
    same_shape = la == lb and ha == hb and va == vb
    rounded = rounded_side(facts) if same_shape else 0
    if rounded:
        bits = min(g for g in facts.grids if g is not None)
        votes.append((3.0, rounded, f"the same weights up to rounding, one side on a {bits}-bit grid: the copy"))
    changed = {k for k, v in facts.changed.items() if v >= UNCHANGED}
    embed_kept = facts.embed_changed is not None and facts.embed_changed < UNCHANGED
    if same_shape and facts.distance < SAME_FUNCTION and (not facts.same_basis or (facts.raw or 0.0) > OTHER_BASIS):
        votes += _disguise_votes(a, b, facts, changed, embed_kept)
    elif facts.growth is not None and facts.raw and (facts.raw >= CAST or pa == pb):  # a cast's change is rounding
        grew = 1 if facts.growth > 0 else -1
        weight = min(1.0, abs(facts.growth))
        if changed and changed <= {"o", "down"}:
            # Abliteration projects a direction out of the residual writers: the child is the smaller.
            votes.append((weight, -grew, "a direction projected out of the residual writers: the smaller is the child"))
        elif not embed_kept:
            votes.append((weight, grew, "a change added by training: the larger is the child"))
        else:
            # Embedding kept: a merged adapter or a quantisation adds a change (the larger is the child), pruning
            # removes weight (the mirror image); adapters change far more than rounding does, so their vote is
            # sure, a small change's weak. A small change with neither side on a quantisation grid is no
            # rounding that left its mark: weight removed, the smaller is the child (pruning).
            mean = sum(facts.changed.values()) / max(1, len(facts.changed))
            if mean >= ADAPTER_CHANGE:
                votes.append((weight, grew, "a change added to the decoder: the larger is the child"))
            elif facts.grids == (None, None):
                why = "a small change on no quantisation grid: pruned, the smaller is the child"
                votes.append((0.3 * weight, -grew, why))
            else:
                votes.append((0.3 * weight, grew, "a change added to the decoder: the larger is the child"))
    return votes


def basis_votes(
    edges: Sequence[tuple[int, int]], raw: dict[tuple[int, int], float | None], other_bases: set[tuple[int, int]],
    far: float,
) -> dict[tuple[int, int], list[Vote]]:  # fmt: skip
    """The basis prior's vote on each edge of `other_bases` (pairs of one function in other weight bases, `a < b`
    as in `edges`): for the side with forest neighbours of its own basis (raw distance under `far`) when the
    other side has none (see the module docstring).

    Args:
        edges: the forest's edges.
        raw: each edge's raw response distance (None: other shapes).
        other_bases: the edges between two weight bases of one function.
        far: the raw distance from which two models are in other bases.
    """
    adj: dict[int, list[tuple[int, float | None]]] = defaultdict(list)
    for a, b in edges:
        adj[a].append((b, raw[(a, b)]))
        adj[b].append((a, raw[(a, b)]))

    def kin(x: int, other: int) -> int:
        return sum(1 for y, r in adj[x] if y != other and r is not None and r < far)

    out: dict[tuple[int, int], list[Vote]] = {}
    for a, b in other_bases:
        ka, kb = kin(a, b), kin(b, a)
        if (ka == 0) != (kb == 0):
            out[(a, b)] = [(BUILT_ON, 1 if ka else -1, "its relatives share the other's weight basis: the copy")]
    return out


def _embed_spread(fp: Fingerprint) -> float | None:
    """Coefficient of variation of the embedding's energy over the kept residual coordinates."""
    if "embed" not in fp.identity:
        return None
    norms = np.linalg.norm(np.asarray(fp.identity["embed"], dtype=np.float64), axis=0)
    return float(norms.std() / norms.mean()) if norms.mean() > 0 else None


def _disguise_votes(
    a: Fingerprint, b: Fingerprint, facts: PairFacts, changed: set[str], embed_kept: bool
) -> list[Vote]:
    """Which side of a function-preserving pair is the disguise (see the module docstring)."""
    if not embed_kept:
        # A rotation of the residual stream: the rotated embedding's energy is spread unevenly over the kept
        # coordinates (every rotation of the catalog's seed 0 raised it, by 40-140%).
        sa, sb = _embed_spread(a), _embed_spread(b)
        if sa and sb and abs(math.log(sb / sa)) > 0.1:
            return [(2.0, 1 if sb > sa else -1, "the rotated side's embedding energy is the more uneven")]
        return []
    if changed and changed <= READERS and facts.growth is not None:
        # Norm gains folded into the projections that read them: the rescaled projections are the larger.
        return [(min(1.0, abs(facts.growth)), 1 if facts.growth > 0 else -1,
                 "norm gains folded into the readers of the residual stream: the larger is the child")]  # fmt: skip
    if not changed & HEAD_MAPPED:
        # MergeLock's maps act per attention head (values and outputs); a neuron permutation of the FFN moves no
        # head, and its kurtosis differs only by which rows TensorGuard samples: no evidence.
        return []
    ka, kb = a.tensorguard.get("global_kurtosis"), b.tensorguard.get("global_kurtosis")
    if ka is None or kb is None or not (math.isfinite(ka) and math.isfinite(kb)) or ka <= 0 or kb <= 0 or ka == kb:
        return []
    gap = abs(math.log(kb / ka))
    return [(min(2.0, 10 * gap), 1 if kb > ka else -1, "the disguised side's gradient kurtosis rose")]


def orient(
    nodes: Sequence[int], edges: Sequence[tuple[int, int]], votes: dict[tuple[int, int], list[Vote]]
) -> tuple[int, dict[tuple[int, int], tuple[int, int, float]]]:
    """Root one tree at the node its edges' votes agree with best.

    Args:
        nodes: the tree's nodes.
        edges: its edges `(a, b)`, as tested.
        votes: per edge, the votes read from `a` to `b`.

    Returns:
        `(root, {edge: (parent, child, margin)})`: `margin` is how much more the votes support this
        orientation than the reverse one at the best root for it (0 when nothing decides).
    """
    net = {e: sum(w * s for w, s, _ in votes.get(e, [])) for e in edges}  # + : a parent of b
    adj: dict[int, list[tuple[int, tuple[int, int]]]] = defaultdict(list)
    for e in edges:
        adj[e[0]].append((e[1], e))
        adj[e[1]].append((e[0], e))
    start = min(nodes)
    # Score of rooting at `start`: every edge pointing away from it.
    order, parent_of, seen = [start], {start: None}, {start}
    for u in order:
        for v, e in adj[u]:
            if v not in seen:
                seen.add(v)
                parent_of[v] = (u, e)
                order.append(v)
    away = lambda u, e: net[e] if e[0] == u else -net[e]  # noqa: E731 - vote for u parent on edge e
    score = {start: sum(away(parent_of[v][0], parent_of[v][1]) for v in order[1:])}
    for v in order[1:]:
        u, e = parent_of[v]
        score[v] = score[u] - away(u, e) + away(v, e)
    root = max(sorted(nodes), key=lambda n: (score[n], -n))
    out = {}
    for v in order[1:]:
        u, e = parent_of[v]
        # The best root on each side of the edge: the side of `v` holds v's subtree (rooted at `start`).
        sub = _subtree(v, adj, parent_of)
        best_v = max(score[n] for n in sub)
        best_u = max(score[n] for n in nodes if n not in sub)
        if root in sub:  # v's side holds the root: v is the parent of u
            out[e] = (v, u, best_v - best_u)
        else:
            out[e] = (u, v, best_u - best_v)
    return root, out


def _subtree(v: int, adj: dict, parent_of: dict) -> set[int]:
    out, stack = {v}, [v]
    while stack:
        x = stack.pop()
        for y, _ in adj[x]:
            if y not in out and parent_of.get(y) is not None and parent_of[y][0] == x:
                out.add(y)
                stack.append(y)
    return out
