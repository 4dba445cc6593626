"""Residual coordinates of two widths, paired by what the sign flips leave unchanged.

A model pruned to a narrower residual stream (NVIDIA's Minitron recipe: residual channels, FFN units and
heads kept by activation importance, then distillation) keeps a subset of its parent's residual
coordinates, possibly reordered; a model grown wider keeps all of them among new ones. Its fingerprint
stores responses at its own seeded subset of coordinates (`lineage.probe.identity.residual_coordinates`,
seeded by the width alone), so some of the suspect's stored coordinates are images of stored coordinates of
the reference, at unknown positions, and the rest have no partner there.

**Pairing costs the sign test nothing.** Each stored suspect coordinate is paired with one stored reference
coordinate, one to one (a linear assignment), by a score built from `|cos|` alone: the cosine of the two
coordinates' anchor responses is multiplied by `s_c t_m` when the suspect's coordinate `c` is flipped by
`s_c` and the reference's `m` by `t_m`, so its absolute value, and the whole pairing, is the same for every
flip of either model. The groups then sum, as at one width, one term per pair: the term of pair `(c, m)`
changes sign with `s_c` (and with `t_m`) and with no other flip, and no coordinate of either side enters two
pairs. Under independence the flips of the suspect's stored coordinates are a symmetry of its
distribution that leaves the pairing fixed, so conditional on the pairing the signs of the terms are still
independent fair coins, and the exact bound of `lineage.compare.signs` holds unchanged, as it does for the
choice of layers at any two depths. Unpaired coordinates (those with no partner stored) enter as pairs of
unrelated coordinates: terms of small size and random sign, which dilute the sum but never bias it.

The score of `(c, m)` is `|cos|` of the two columns over the embedding and head rows, plus, for each of
`PAIRING_LAYERS` suspect layers, the largest over reference layers of `|cos|` of the two blocks' writes: a layer-free
statistic, so width and depth pruned at once pair too, before `_paired_layers` pairs the layers.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Suspect layers (evenly spread) whose writes score the pairs: a true pair agrees in every layer, so a few
#: layers separate it from chance as well as all would, at a fraction of the cost.
PAIRING_LAYERS = 8


def _unit_columns(x: np.ndarray) -> np.ndarray:
    """`[C, rows]`: the columns of `x` (`[rows, C]`) scaled to unit norm (zero columns stay zero)."""
    n = np.linalg.norm(x, axis=0, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0).T


def paired_coordinates(
    embed_a: np.ndarray,
    embed_b: np.ndarray,
    layers_a: list[tuple[np.ndarray, ...]],
    layers_b: list[tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, np.ndarray]:
    """`(columns of a, columns of b)`: the one-to-one pairing of two models' stored residual coordinates.

    Args:
        embed_a, embed_b: `[rows, Ca]` and `[rows, Cb]` embedding (and head) rows on the shared anchors.
        layers_a, layers_b: per layer, the blocks' writes (`[rows, Ca]`, `[rows, Cb]` each; the same blocks
            in the same order on both sides), on the shared anchors; may be empty.

    Returns:
        Two int64 arrays of `min(Ca, Cb)` positions each: `a[:, ca[k]]` is paired with `b[:, cb[k]]`,
        sorted by `ca`. The pairing depends on `|cos|` only (module docstring).
    """
    ea, eb = _unit_columns(embed_a), _unit_columns(embed_b)
    score = np.abs(ea @ eb.T)
    if layers_a and layers_b:
        blocks = len(layers_a[0])
        # float32 products, one per suspect layer and block against every reference layer at once (memory stays
        # [Ca, Lb Cb] however deep the models); rounded to 1e-4, so the last bits of a BLAS seldom decide a pairing.
        ub = [np.concatenate([_unit_columns(layer[k]) for layer in layers_b]).astype(np.float32) for k in range(blocks)]
        for p in np.unique(np.linspace(0, len(layers_a) - 1, min(len(layers_a), PAIRING_LAYERS)).round()):
            layer = layers_a[int(p)]
            per_ref = sum(np.abs(_unit_columns(layer[k]).astype(np.float32) @ ub[k].T) for k in range(blocks))
            # The best reference layer, chosen per pair of coordinates from |cos|.
            score = score + per_ref.reshape(len(score), len(layers_b), -1).max(1).astype(np.float64) / blocks
    score = np.round(score, 4)
    ca, cb = linear_sum_assignment(score, maximize=True)
    return ca.astype(np.int64), cb.astype(np.int64)


def paired_units(
    readers_a: np.ndarray, writers_a: np.ndarray, readers_b: np.ndarray, writers_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """`(rows of a, rows of b, score)`: the one-to-one pairing of two layers' value dimensions of different
    counts (heads pruned), from `|cos|` of their reader (`v`) and writer (`o`) profiles, and its total score.

    A flip of one value dimension negates its `v` and `o` profiles together, so the score, the pairing and the
    choice of layer by the score are the same for every flip (module docstring), and the term of a pair,
    the mean of its two cosines, changes sign with either dimension's flip alone.
    """
    score = np.round(np.abs(unit_rows(readers_a) @ unit_rows(readers_b).T)
                     + np.abs(unit_rows(writers_a) @ unit_rows(writers_b).T), 6)  # fmt: skip
    ra, rb = linear_sum_assignment(score, maximize=True)
    return ra.astype(np.int64), rb.astype(np.int64), float(score[ra, rb].sum())


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows (the last axis) scaled to unit norm (zero rows stay zero): the one helper every pairing reads."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)
