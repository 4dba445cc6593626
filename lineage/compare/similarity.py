"""Similarity of two fingerprints' sketches, and the distance every lineage decision rests on.

Per circuit, sketches are compared by correlation over the anchor ids both fingerprints share. Model-level
circuits (`embed`, `head`) give one correlation each. Layer circuits (`qk`, `vo`, `ffn`) give a layer-by-
layer correlation matrix, and the best order-preserving one-to-one matching of layers is taken (a
longest-common-subsequence style alignment), averaged over the shallower model's layers: a model with
layers removed still lines up with its parent, and models of different depths compare by their best
matching layers. The similarity is a weighted mean over circuits (`CIRCUIT_WEIGHTS`; a circuit only one
side has counts 0), and the distance is `1 - similarity`, in [0, 2]: 0 for the same function, about 0.5
for another size of the same family, about 1 for unrelated models.

All suspects are compared with all references in batched array operations, chunked to bound memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from lineage.errors import ClassificationError
from lineage.features.sketch import LAYER_CIRCUITS, MODEL_CIRCUITS, normal_forms
from lineage.fingerprint import Fingerprint

CIRCUIT_ORDER: tuple[str, ...] = (*MODEL_CIRCUITS, *LAYER_CIRCUITS)
#: Half the similarity is the family level (the output embedding, which a family's tokenizer and data shape
#: and all its sizes share), half the identity level (every circuit alike, which only one lineage of weights
#: shares). A derivative agrees on both; another size of its family on the first; an unrelated model on none.
CIRCUIT_WEIGHTS: dict[str, float] = {
    c: 0.5 / len(CIRCUIT_ORDER) + (0.5 if c == "unembed" else 0.0) for c in CIRCUIT_ORDER
}
MIN_SHARED_ANCHORS = 8
_CHUNK = 256


def _probe_key(fp: Fingerprint) -> tuple:
    return tuple(fp.settings.get(k) for k in ("pipeline", "seed"))


def _check(fps: Sequence[Fingerprint]) -> None:
    for fp in fps:
        if not fp.has_sketches:
            raise ClassificationError(
                f"'{fp.name}' has no lineage sketches (a published feature file?): use --method tensorguard"
            )
    keys = {_probe_key(fp) for fp in fps}
    if len(keys) > 1:
        # Other probes (seed) or another pipeline version give incomparable numbers, not large distances.
        raise ClassificationError(
            "fingerprints made with different probe settings or lineage pipelines (pipeline, seed: "
            f"{', '.join(map(str, sorted(keys, key=str)))}): fingerprint the models again with one setting"
        )


def align_layers(corr: np.ndarray) -> np.ndarray:
    """Best order-preserving one-to-one layer matching, batched.

    Args:
        corr: `[..., La, Lb]` layer-by-layer correlations.

    Returns:
        `[...]` the matched correlations summed over the best monotone matching, divided by min(La, Lb).
    """
    la, lb = corr.shape[-2:]
    best = np.zeros((*corr.shape[:-2], la + 1, lb + 1), dtype=np.float64)
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            best[..., i, j] = np.maximum(
                np.maximum(best[..., i - 1, j], best[..., i, j - 1]), best[..., i - 1, j - 1] + corr[..., i - 1, j - 1]
            )
    return best[..., la, lb] / min(la, lb)


def _shared_positions(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    return ia, ib


def _stack(fps: Sequence[Fingerprint], rows: Sequence[int], circuit: str, keep: np.ndarray | None) -> np.ndarray:
    return normal_forms(np.stack([fps[i].sketches[circuit] for i in rows]), keep)


def _block_similarity(
    a: Sequence[Fingerprint], b: Sequence[Fingerprint], keep_a: np.ndarray | None, keep_b: np.ndarray | None
) -> np.ndarray:
    """Similarities `[len(a), len(b)]` for fingerprints that all share one anchor layout per side."""
    total = np.zeros((len(a), len(b)))
    for circuit in CIRCUIT_ORDER:
        by_depth_a, by_depth_b = defaultdict(list), defaultdict(list)
        for i, fp in enumerate(a):
            if circuit in fp.sketches:
                by_depth_a[fp.sketches[circuit].shape[0]].append(i)
        for j, fp in enumerate(b):
            if circuit in fp.sketches:
                by_depth_b[fp.sketches[circuit].shape[0]].append(j)
        normed_b = {lb: _stack(b, jb, circuit, keep_b) for lb, jb in by_depth_b.items()}  # [m, Lb, D] each
        for la, ia in by_depth_a.items():
            for start in range(0, len(ia), _CHUNK):
                chunk = ia[start : start + _CHUNK]
                na = _stack(a, chunk, circuit, keep_a)  # [n, La, D], normalised once per chunk
                for lb, jb in by_depth_b.items():
                    nb = normed_b[lb]
                    # One matrix product for every layer pair of every model pair: [n*La, m*Lb].
                    corr = (na.reshape(-1, na.shape[-1]) @ nb.reshape(-1, nb.shape[-1]).T).astype(np.float64)
                    corr = corr.reshape(len(chunk), la, len(jb), lb).transpose(0, 2, 1, 3)
                    sim = align_layers(corr) if circuit in LAYER_CIRCUITS else corr[..., 0, 0]
                    total[np.ix_(chunk, jb)] += CIRCUIT_WEIGHTS[circuit] * sim
    return total


def sketch_similarity_matrix(a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> np.ndarray:
    """Similarities in [-1, 1] of every fingerprint of `a` to every one of `b`.

    Args:
        a, b: fingerprints with sketches.

    Returns:
        float64 `[len(a), len(b)]`.

    Raises:
        ClassificationError: a fingerprint has no sketches.
    """
    _check([*a, *b])
    out = np.zeros((len(a), len(b)))
    groups_a: dict[bytes, list[int]] = defaultdict(list)
    groups_b: dict[bytes, list[int]] = defaultdict(list)
    for i, fp in enumerate(a):
        groups_a[np.asarray(fp.anchors, dtype=np.int64).tobytes()].append(i)
    for j, fp in enumerate(b):
        groups_b[np.asarray(fp.anchors, dtype=np.int64).tobytes()].append(j)
    for key_a, ia in groups_a.items():
        for key_b, jb in groups_b.items():
            anchors_a, anchors_b = np.frombuffer(key_a, dtype=np.int64), np.frombuffer(key_b, dtype=np.int64)
            if key_a == key_b:
                keep_a = keep_b = None
            else:
                keep_a, keep_b = _shared_positions(anchors_a, anchors_b)
                if len(keep_a) < MIN_SHARED_ANCHORS:
                    continue  # no common tokens: nothing to compare, similarity 0 (unrelated)
            out[np.ix_(ia, jb)] = _block_similarity([a[i] for i in ia], [b[j] for j in jb], keep_a, keep_b)
    return out


def sketch_distance_matrix(a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> np.ndarray:
    """Distances `1 - similarity` in [0, 2] of every fingerprint of `a` to every one of `b`."""
    return np.clip(1.0 - sketch_similarity_matrix(a, b), 0.0, 2.0)
