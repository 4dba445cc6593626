"""A child carries its parent's whole change: chains the spanning forest drew through a sibling are re-hung.

The spanning forest joins each model to its nearest relative, which is its parent as long as the changes
that training adds are independent of each other. Two children of one base trained on like data (continued
pre-training on code beside a code fine-tune) share part of their changes, so the larger one can lie nearer
its sibling than its base, and the forest hangs it from the sibling (`B -> F -> C` for `B -> F`, `B -> C`).
What tells the two apart is how much of the middle model's change the last one carries. The raw responses
are linear in the weights, so with `d = F - B` the projection `c = <C - B, d> / |d|^2` is what share of `F`'s
change `C` holds, seen from `B`: a child of `F` holds it all (`C = F + e`, `e` nearly orthogonal to `d`:
`c` about 1), a sibling only the part their training shares (`c` under 1).

On the catalog's seed 0 every true chain `W -> X -> Y` of one weight basis has `c` 0.965-1.000 (int4,
pruning, abliteration, vocabulary edits, casts of a fine-tune), every pair of siblings at most 0.73 (a
LoRA adapter and continued pre-training beside code fine-tunes; fine-tunes beside each other 0.2-0.4), so
a directed chain whose `c` is under `WHOLE_CHANGE` 0.85 is re-hung: the last model becomes a child of the
first. Near-exact copies (raw distance under `CAST`) are left alone: their tiny change makes `c` noise; so are
disguises (the same function in other weights, the relation's rule: a MergeLock copy 0.7-1.0 apart, a
rotation 1.4), whose change is one of basis, not one that training added (this test was first two bases
apart; seed 1's Gemma MergeLock copy, 0.67 from its parent, showed that too narrow).
A fine-tune of a fine-tune that undoes much of its parent's change (catastrophic forgetting) would be
re-hung from its grandparent; the catalog has none to say how often that happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint import Fingerprint
from lineage.tree.evidence import CAST
from lineage.tree.relation import OTHER_BASIS, SAME_FUNCTION

#: The least share of its parent's change (from the grandparent) that a child carries (module docstring).
WHOLE_CHANGE = 0.85

Oriented = dict[tuple[int, int], tuple[int, int, bool]]  # edge -> (parent, child, directed)


def _flat(fp: Fingerprint) -> np.ndarray:
    return np.concatenate([fp.responses[k].astype(np.float64).ravel() for k in sorted(fp.responses)])


def _signature(fp: Fingerprint) -> tuple:
    return tuple((k, v.shape) for k, v in sorted(fp.responses.items()))


def carried(grand: np.ndarray, parent: np.ndarray, child: np.ndarray) -> float:
    """`<child - grand, parent - grand> / |parent - grand|^2`: the share of the parent's change (from `grand`)
    that `child` carries (about 1 for a child of `parent`, under 1 for a sibling)."""
    d = parent - grand
    dd = float(d @ d)
    return float((child - grand) @ d) / dd if dd > 0 else 1.0


def _relative(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(x - y)) / max(1e-30, float(np.sqrt(np.linalg.norm(x) * np.linalg.norm(y))))


def is_disguise(a: Fingerprint, b: Fingerprint, raw: float) -> bool:
    """Whether `a` and `b` compute one function (sketch distance under `SAME_FUNCTION`) in weights further apart
    than rounding or a norm's rescaling alone moves them (raw distance over `OTHER_BASIS`): the relation's rule."""
    return raw >= OTHER_BASIS and float(sketch_distance_matrix([a], [b])[0][0]) < SAME_FUNCTION


def misplaced(fps: Sequence[Fingerprint], oriented: Oriented) -> list[tuple[float, int, int, int]]:
    """The directed chains `grand -> parent -> child` (one weight basis, no near-exact copy) whose child carries
    under `WHOLE_CHANGE` of its parent's change, as `(share, grand, parent, child)`, the smallest share first.

    Args:
        fps: the fingerprints.
        oriented: each forest edge's orientation.
    """
    up = {c: (p, d) for p, c, d in oriented.values()}
    cache: dict[int, np.ndarray] = {}

    def vec(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = _flat(fps[i])
        return cache[i]

    out = []
    for parent, child, directed in oriented.values():
        if not directed or parent not in up or not up[parent][1]:
            continue
        grand = up[parent][0]
        trio = (fps[grand], fps[parent], fps[child])
        if not all(fp.responses for fp in trio) or len({_signature(fp) for fp in trio}) != 1:
            continue
        g, p, c = vec(grand), vec(parent), vec(child)
        near = (_relative(g, p), _relative(p, c))
        links = zip(((grand, parent), (parent, child)), near)
        if min(near) < CAST or any(is_disguise(fps[x], fps[y], r) for (x, y), r in links):
            continue  # a copy's change is noise; a disguise's is a change of basis, not one training added
        share = carried(g, p, c)
        if share < WHOLE_CHANGE:
            out.append((share, grand, parent, child))
    return sorted(out)
