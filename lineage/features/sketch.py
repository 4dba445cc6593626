"""Sketch arrays: per-circuit stacks of probe-response matrices, and their normal form for comparison.

A sketch is compared by correlation, so each `[P, P]` matrix is centred and scaled to unit norm over the
anchor ids two fingerprints share. Correlation ignores a circuit's overall scale (a disguise may rescale
freely) and keeps its whole pattern across token pairs, which is where a model's identity lives.
"""

from __future__ import annotations

import numpy as np

LAYER_CIRCUITS: tuple[str, ...] = ("qk", "vo", "ffn")
MODEL_CIRCUITS: tuple[str, ...] = ("embed", "head", "unembed")
#: Circuits whose probe-response sketches a fingerprint holds.
CIRCUITS: tuple[str, ...] = (*MODEL_CIRCUITS, *LAYER_CIRCUITS)


def stack_layers(per_layer: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """`[L, P, P]` float32 arrays per circuit from a list of per-layer `{circuit: [P, P]}` dicts."""
    return {c: np.stack([layer[c] for layer in per_layer]).astype(np.float32) for c in LAYER_CIRCUITS if per_layer}


def normal_form(sketch: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Centred, unit-norm off-diagonal rows of a `[L, P, P]` sketch restricted to anchor positions `keep`.

    Args:
        sketch: the stored sketch.
        keep: positions (into the fingerprint's anchors) to keep on both axes; all when None.

    Returns:
        float64 `[L, P'*(P'-1)]`, each row of mean 0 and norm 1 (a zero row stays zero).
    """
    return normal_forms(np.asarray(sketch)[None], keep)[0].astype(np.float64)


def normal_forms(sketches: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """`normal_form` of a stack `[N, L, P, P]` of sketches at once (float32 `[N, L, P'*(P'-1)]`)."""
    s = np.asarray(sketches, dtype=np.float32)
    if keep is not None:
        s = s[:, :, keep][:, :, :, keep]
    # The diagonal (a token with itself) is alike in every model, trained or not, and row and column
    # means are per-token effects (frequency, norm) that every tokenizer orders alike: kept, they make
    # unrelated models look correlated. Only the token-pair interactions are compared: the off-diagonal
    # entries, double-centred (row and column means removed).
    p = s.shape[-1]
    off = ~np.eye(p, dtype=bool)
    s = np.where(off, s, np.float32(0.0))
    row = s.sum(axis=-1, keepdims=True) / max(p - 1, 1)
    col = s.sum(axis=-2, keepdims=True) / max(p - 1, 1)
    total = s.sum(axis=(-2, -1), keepdims=True) / max(p * (p - 1), 1)
    flat = (s - row - col + total)[..., off]
    norms = np.linalg.norm(flat, axis=-1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
