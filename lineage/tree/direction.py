"""Which of two related models is the parent: evidence per edge, then one root per tree.

Each edge gets the votes its own facts give (`edge_votes`), each `(weight, says)`: `says` is +1 when the
facts say `b` is the child of `a`, -1 for the reverse, and `weight` is how sure the rule is.

* **Depth**: the deeper model is the up-scaled child when some of its layers repeat (two of its layers
  whose sketches correlate above `DUPLICATE_LAYERS`: SOLAR-style up-scaling copies layers), else the
  shallower one is the pruned child.
* **Width**: the narrower model is the pruned child.
* **Vocabulary size**: the larger vocabulary is the child (extension is what the hub does; trimming, the
  reverse, is rarer, so this vote is weak).
* **Stored precision**: the model stored in fewer bits is the child (a cast or quantisation).
* **Growth of the weights** (`PairFacts.growth`, raw responses): training and rounding add a change nearly
  orthogonal to the parent, so the child's weights are the larger, by the change's own energy; pruning and
  abliteration remove weight (the change is orthogonal to the child), so the child is the smaller. Which
  of the two applies is read from the relation (`lineage.tree.relation`): pruned, or only the residual
  writers changed. The vote's weight grows with `|growth|`: 1 for a clean `+-1`.
* **Disguise**: a model that computes its relative's very function in another weight basis (a rotation,
  MergeLock maps, rescaled norms) was made from it. The disguised side is the one whose weight statistics
  moved away from what training leaves: TensorGuard's gradient kurtosis (`global_kurtosis`) rises when
  per-head invertible maps or rotations mix the trained coordinates.

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
from lineage.tree.evidence import PairFacts
from lineage.tree.relation import SAME_FUNCTION, precision, relation

#: Correlation of two layers' sketches above which they are copies of one layer (up-scaling).
DUPLICATE_LAYERS = 0.98
#: The least total vote, in favour of one orientation over the other, that decides an edge.
MIN_MARGIN = 0.25

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
        votes.append((0.5, 1 if vb > va else -1, "the larger vocabulary is the extended one"))
    pa, pb = precision(facts.dtypes[0]), precision(facts.dtypes[1])
    if pa is not None and pb is not None and pa != pb:
        votes.append((3.0, 1 if pb < pa else -1, "the model stored in fewer bits is the cast"))
    if facts.distance < SAME_FUNCTION and (not facts.same_basis or (facts.raw or 0.0) > 0.3):
        ka, kb = a.tensorguard.get("global_kurtosis"), b.tensorguard.get("global_kurtosis")
        if ka is not None and kb is not None and math.isfinite(ka) and math.isfinite(kb) and ka != kb:
            gap = abs(math.log(max(kb, 1e-9) / max(ka, 1e-9)))
            votes.append((min(2.0, 10 * gap), 1 if kb > ka else -1, "the disguised side's weight kurtosis rose"))
    elif facts.growth is not None and facts.raw is not None and facts.raw > 0:
        # A subtractive edit read either way round: the relation rules as if `b` were the child, and as if
        # `a` were (swapped facts); either says "pruned" or "an edit of the residual writers" only if it is one.
        subtractive = _subtractive(facts) or _subtractive(facts.swapped())
        says = (1 if facts.growth > 0 else -1) * (-1 if subtractive else 1)
        votes.append((min(1.0, abs(facts.growth)), says, "weights removed: the smaller is the child" if subtractive
                      else "a change added: the larger is the child"))  # fmt: skip
    return votes


def _subtractive(facts: PairFacts) -> bool:
    rel, _ = relation(facts)
    changed = {k for k, v in facts.changed.items() if v >= 1e-3}
    return rel == "pruned" or (bool(changed) and changed <= {"o", "down"})


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
