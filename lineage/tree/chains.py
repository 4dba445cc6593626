"""A child carries its parent's whole change: chains the spanning forest drew through a sibling are re-hung.

The spanning forest joins each model to its nearest relative, which is its parent as long as the changes
that training adds are independent of each other. Two children of one base trained on like data (continued
pre-training on code beside a code fine-tune) share part of their changes, so the larger one can lie nearer
its sibling than its base, and the forest hangs it from the sibling (`B -> F -> C` for `B -> F`, `B -> C`).
What tells the two apart is how much of the middle model's change the last one carries. The raw responses
are linear in the weights, so with `d = F - B` the projection `c = <C - B, d> / |d|^2` is what share of `F`'s
change `C` holds, seen from `B`: a child of `F` holds it all (`C = F + e`, `e` nearly orthogonal to `d`:
`c` about 1), a sibling only the part their training shares (`c` under 1).

Seen alone, that projection fails for a sibling whose change runs further along the direction every sibling
shares (seed 2's continued pre-training carries 1.16 of a code fine-tune's change from their base, and over
0.9 of two more). So `F`'s siblings `S_i` (the other children of `B`, in its basis, no copies or disguises)
enter the measure: `c` is `F`'s coefficient when `C - B` is regressed (non-negative least squares) on
`F - B` and every `S_i - B`. A child of `F` needs all of `F`'s change, its own part and the shared part
(`c` about 1: its own change is independent of the siblings'); a sibling splits the shared direction among
all who share it and needs none of `F`'s own part (seed 2's continued pre-training: 0.46-0.71).

On the catalog's seeds 0-2 every true chain `W -> X -> Y` of one weight basis has `c` 0.92-1.00 (int4,
pruning, abliteration, vocabulary edits, casts of a fine-tune), every pair of siblings at most 0.79 (a
LoRA adapter and continued pre-training beside code fine-tunes; fine-tunes beside each other 0.2-0.4), so
a directed chain whose `c` is under `WHOLE_CHANGE` 0.85 is re-hung: the last model becomes a child of the
first (0.85 chosen on seed 0, where the projection alone gave chains 0.965-1.000 and siblings 0.73).
Near-exact copies (raw distance under `CAST`) are left alone: their tiny change makes `c` noise; so are
disguises (the same function in other weights, the relation's rule: a MergeLock copy 0.7-1.0 apart, a
rotation 1.4), whose change is one of basis, not one that training added (this test was first two bases
apart; seed 1's Gemma MergeLock copy, 0.67 from its parent, showed that too narrow).
A fine-tune of a fine-tune that undoes much of its parent's change (catastrophic forgetting) would be
re-hung from its grandparent; the catalog has none to say how often that happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls

from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint import Fingerprint
from lineage.tree.edges import OTHER_BASES
from lineage.tree.evidence import CAST
from lineage.tree.relation import OTHER_BASIS, SAME_FUNCTION

#: The least share of its parent's change (from the grandparent) that a child carries (module docstring).
WHOLE_CHANGE = 0.85

Oriented = dict[tuple[int, int], tuple[int, int, bool]]  # edge -> (parent, child, directed)


def _flat(fp: Fingerprint) -> np.ndarray:
    return np.concatenate([fp.responses[k].astype(np.float64).ravel() for k in sorted(fp.responses)])


def _signature(fp: Fingerprint) -> tuple:
    return tuple((k, v.shape) for k, v in sorted(fp.responses.items()))


def carried(
    grand: np.ndarray, parent: np.ndarray, child: np.ndarray, siblings: Sequence[np.ndarray] = ()
) -> float:
    """The share of the parent's change (from `grand`) that `child` carries: about 1 for a child of `parent`,
    under 1 for a sibling.

    Alone, `<child - grand, parent - grand> / |parent - grand|^2`. With the parent's `siblings` (other children
    of `grand`), the parent's coefficient when the child's change is regressed (non-negative least squares) on
    the parent's change and theirs: a child of `parent` still needs all of the parent's change (its own is
    independent of the siblings'), a sibling that shares a direction with all of them splits it among them.
    """
    d = parent - grand
    dd = float(d @ d)
    if dd <= 0:
        return 1.0
    if not len(siblings):
        return float((child - grand) @ d) / dd
    cols = np.stack([d] + [s - grand for s in siblings], axis=1)
    coef, _ = nnls(cols, child - grand, maxiter=50 * cols.shape[1])
    return float(coef[0])


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
    children: dict[int, list[int]] = {}
    for p, c, d in oriented.values():
        if d:
            children.setdefault(p, []).append(c)
    cache: dict[int, np.ndarray] = {}
    apart: dict[tuple[int, int], float] = {}
    disguised: dict[tuple[int, int], bool] = {}

    def vec(i: int) -> np.ndarray:
        if i not in cache:
            cache[i] = _flat(fps[i])
        return cache[i]

    def raw(x: int, y: int) -> float:
        key = (min(x, y), max(x, y))
        if key not in apart:
            apart[key] = _relative(vec(x), vec(y))
        return apart[key]

    def trained(x: int, y: int) -> bool:
        """`y` differs from `x` by a change training could add: neither a near-exact copy nor a disguise."""
        key = (min(x, y), max(x, y))
        if key not in disguised:
            disguised[key] = is_disguise(fps[x], fps[y], raw(x, y))
        return raw(x, y) >= CAST and not disguised[key]

    out = []
    for parent, child, directed in oriented.values():
        if not directed or parent not in up or not up[parent][1]:
            continue
        grand = up[parent][0]
        sig = _signature(fps[grand])
        trio = (fps[grand], fps[parent], fps[child])
        if not all(fp.responses for fp in trio) or len({_signature(fp) for fp in trio}) != 1:
            continue
        if not (trained(grand, parent) and trained(parent, child)):
            continue  # a copy's change is noise; a disguise's is a change of basis, not one training added
        siblings = [vec(z) for z in children.get(grand, []) if z not in (parent, child) and fps[z].responses
                    and _signature(fps[z]) == sig and raw(grand, z) < OTHER_BASES and trained(grand, z)
                    and raw(parent, z) >= CAST and raw(child, z) >= CAST]  # fmt: skip
        share = carried(vec(grand), vec(parent), vec(child), siblings)
        if share < WHOLE_CHANGE:
            out.append((share, grand, parent, child))
    return sorted(out)
