"""What two related models' fingerprints say about which one was made from the other, and how.

Every fact here reads two fingerprints only (headers' summary, sketches, raw and identity responses); the
weights are never opened again. `pair_facts` gathers them once per tree edge; `lineage.tree.direction` and
`lineage.tree.relation` turn them into a direction and a relation, each with its evidence.

* **Shape**: layers, width, vocabulary and stored dtypes from the header summary.
* **Which tensors changed** (`changed`): per tensor kind (`q`, `k`, `v`, `o`, `gate`, `up`, `down`) the raw
  responses' relative change, and whether the embedding's anchor rows changed (identity `embed`): a
  quantised, pruned or adapter copy leaves the embedding as it was; abliteration edits only the writers of
  the residual stream (`o`, `down`) and the embedding.
* **Geometry of the change** `d = r_b - r_a` of the raw responses (linear in the weights, so inner products
  of responses estimate those of the weights): an additive change (training, quantisation noise) is nearly
  orthogonal to the model it was added to, so `|child|^2 = |parent|^2 + |d|^2`; a subtractive one (zeroing
  entries, projecting a direction out) is orthogonal to the result, so `|child|^2 = |parent|^2 - |d|^2`.
  `growth = (|r_b|^2 - |r_a|^2) / |d|^2` is +1 for `b` made from `a` by addition (or `a` from `b` by
  subtraction), -1 for the reverse.
* **Quantisation grids** (`grids`, `Fingerprint.quant_grid`): the bits of the grid most of a model's decoder
  matrices lie on (a rounded copy, stored dequantised or not), None for trained weights. Rounding is the last
  thing done to a copy: training after it leaves the grid. `rounding_bound` is the most a round trip to a grid
  moves the weights.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from lineage.compare.similarity import shared_positions
from lineage.fingerprint import Fingerprint

#: Tensor kinds of the raw responses (`layers.N.<kind>`).
KINDS: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
#: A relative change below this is none: rounding to bfloat16 moves weights by about 0.2-0.4%.
UNCHANGED = 0.01
#: A raw response distance below this is a copy in another precision (a cast), not a change of the weights.
CAST = 0.02
#: Rounding to a grid of step `max|w| / qmax` moves each weight by at most half a step, `step / sqrt(12)` in rms;
#: the largest of a group of Gaussian weights is under 5 of their standard deviations for groups up to a few
#: thousand (a whole row), so a round trip moves the weights by at most `5 / sqrt(12) / qmax` (about
#: `ROUNDING / qmax`) of their norm: an int8 copy 0.011, an int4 0.21.
ROUNDING = 1.5


@dataclass(frozen=True)
class PairFacts:
    """Facts about models `a` and `b` (the order is arbitrary; `growth` reads from `a` to `b`).

    Attributes:
        layers, hidden, vocab: `(a's, b's)` from the header summaries (None when unknown).
        dtypes: `(a's, b's)` stored dtypes.
        distance: sketch distance; raw: raw response distance (None: other tensor shapes).
        same_basis: whether raw responses compare (same tensors and shapes).
        changed: tensor kind -> relative change of its raw responses (same basis only).
        embed_changed: relative change of the embedding's anchor rows (None: not comparable).
        growth: `(|r_b|^2 - |r_a|^2) / |r_b - r_a|^2` (same basis only).
        anchors_moved: whether shared anchor tokens sit at other ids (a permuted or re-numbered vocabulary).
        grids: `(a's, b's)` quantisation grid bits (`grid_of`), None for a model on no grid.
    """

    layers: tuple[int | None, int | None]
    hidden: tuple[int | None, int | None]
    vocab: tuple[int | None, int | None]
    dtypes: tuple[tuple[str, ...], tuple[str, ...]]
    distance: float
    raw: float | None
    same_basis: bool
    changed: dict[str, float]
    embed_changed: float | None
    growth: float | None
    anchors_moved: bool
    grids: tuple[int | None, int | None] = (None, None)

    def swapped(self) -> PairFacts:
        """The same facts read from `b` to `a`."""
        flip = lambda t: (t[1], t[0])  # noqa: E731
        return PairFacts(flip(self.layers), flip(self.hidden), flip(self.vocab), flip(self.dtypes), self.distance,
                         self.raw, self.same_basis, self.changed, self.embed_changed,
                         None if self.growth is None else -self.growth, self.anchors_moved,
                         flip(self.grids))  # fmt: skip


def _summary(fp: Fingerprint, attr: str) -> int | None:
    return getattr(fp.summary, attr) if fp.summary is not None else None


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def pair_facts(a: Fingerprint, b: Fingerprint, distance: float, raw: float | None) -> PairFacts:
    """The facts of one pair (see the module docstring)."""
    same = raw is not None
    changed: dict[str, float] = {}
    growth = None
    if same:
        num: dict[str, float] = {}
        den: dict[str, float] = {}
        xa = xb = 0.0
        dd = 0.0
        for key in sorted(a.responses):
            ra = a.responses[key].astype(np.float64)
            rb = b.responses[key].astype(np.float64)
            k = _kind(key)
            d2 = float(((rb - ra) ** 2).sum())
            num[k] = num.get(k, 0.0) + d2
            den[k] = den.get(k, 0.0) + float(np.sqrt((ra**2).sum() * (rb**2).sum()))
            xa += float((ra**2).sum())
            xb += float((rb**2).sum())
            dd += d2
        changed = {k: math.sqrt(num[k] / den[k]) if den[k] > 0 else 0.0 for k in num}
        growth = (xb - xa) / dd if dd > 0 else 0.0
    return PairFacts(
        layers=(_summary(a, "num_layers"), _summary(b, "num_layers")),
        hidden=(_summary(a, "hidden_size"), _summary(b, "hidden_size")),
        vocab=(_summary(a, "vocab_size"), _summary(b, "vocab_size")),
        dtypes=(a.summary.dtypes if a.summary else (), b.summary.dtypes if b.summary else ()),
        distance=distance,
        raw=raw,
        same_basis=same,
        changed=changed,
        embed_changed=_embed_change(a, b),
        growth=growth,
        anchors_moved=anchors_moved(a, b),
        grids=(grid_of(a), grid_of(b)),
    )


def grid_of(fp: Fingerprint) -> int | None:
    """The bits of the quantisation grid most of the model's decoder matrices lie on (None: on none, or fewer
    than half of those looked at on one)."""
    on = [b for b in fp.quant_grid.values() if b]
    if not on or 2 * len(on) < len(fp.quant_grid):
        return None
    return Counter(on).most_common(1)[0][0]


def rounding_bound(bits: int) -> float:
    """The most a round trip to a `bits`-bit grid moves the weights, relative to their norm (`ROUNDING`)."""
    return ROUNDING / max(1, 2 ** (bits - 1) - 1)


def rounded_side(facts: PairFacts) -> int:
    """Which of the pair is a rounded copy of the other: +1 for `b`, -1 for `a`, 0 when the grids do not tell
    (neither or both on one grid, or the two further apart than a round trip to the coarser grid moves weights).
    The copy lies on the coarser grid (a model on none counts as the finest)."""
    (ga, gb), raw = facts.grids, facts.raw
    if ga == gb or raw is None:
        return 0
    coarse = min(g for g in (ga, gb) if g is not None)
    if raw > rounding_bound(coarse):
        return 0
    return 1 if gb == coarse else -1


def _embed_change(a: Fingerprint, b: Fingerprint) -> float | None:
    """Relative change of the embedding's anchor rows over the anchors both share (None: not comparable)."""
    if "embed" not in a.identity or "embed" not in b.identity or a.anchors is None or b.anchors is None:
        return None
    ea, eb = a.identity["embed"], b.identity["embed"]
    if ea.shape[1] != eb.shape[1]:
        return None
    keep_a, keep_b = shared_positions(a, b)
    if len(keep_a) == 0:
        return None
    x, y = ea[keep_a].astype(np.float64), eb[keep_b].astype(np.float64)
    scale = math.sqrt(float(np.linalg.norm(x)) * float(np.linalg.norm(y)))
    return float(np.linalg.norm(x - y)) / scale if scale > 0 else None


def anchors_moved(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether tokens both models hold as anchors sit at other row ids in them (a renumbered vocabulary)."""
    if not (a.anchor_tokens and b.anchor_tokens) or a.anchors is None or b.anchors is None:
        return False
    ids_a = dict(zip(a.anchor_tokens, a.anchors[: len(a.anchor_tokens)].tolist()))
    ids_b = dict(zip(b.anchor_tokens, b.anchors[: len(b.anchor_tokens)].tolist()))
    shared = ids_a.keys() & ids_b.keys()
    return any(ids_a[t] != ids_b[t] for t in shared)
