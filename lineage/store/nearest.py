"""Classifying a whole store against references: nearest reference by blocked matrix products.

Per block of store rows (float16 on disk, float32 in the product) the approximate similarity to every
reference is two matrix products, the identity part and the family part, the latter scaled per pair of
anchor layouts by the vocabulary-overlap factor (`lineage.store.embed.layout_overlap`). A block of 32k rows
against 1,000 references is two 128 MB float32 products: memory stays bounded whatever the store's size.
An exact product costs 2 N R d flops (0.5 TFLOP for a million rows, a thousand references and d = 256),
a few seconds of BLAS on two cores; an approximate index (faiss, usearch) would save little at R = 1,000
and would add a second approximation, so there is none.

Each row gets its nearest reference, the approximate similarity, the nearest's family, whether it is
beyond the unknown threshold, and a flag `needs_exact` when the verdict could flip under the projection
noise: its similarity within `margin` of the threshold, or a reference of another family within `margin`
of the nearest. Only flagged rows need the exact pipeline (`lineage classify` on their fingerprints).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.store.embed import Embedder, EmbeddingOptions, layout_of, layout_overlap
from lineage.store.store import Store

BLOCK_ROWS = 32768
#: Default margin: about two standard deviations of the projection noise of a related pair at dim 256
#: (measured on the mini catalog, see bench/bench_store.py and the module docstring of `embed`).
DEFAULT_MARGIN = 0.15


@dataclass(frozen=True)
class ReferenceVectors:
    """References as compact vectors.

    Attributes:
        names, families: per reference.
        vectors: float32 `[R, dim]`.
        layouts: each reference's anchor layout (`layout_of`).
    """

    names: tuple[str, ...]
    families: tuple[str, ...]
    vectors: np.ndarray
    layouts: tuple[dict, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("no references")
        if not (len(self.names) == len(self.families) == len(self.vectors) == len(self.layouts)):
            raise ValueError("one family, vector and layout per reference")


def reference_vectors(
    fps: Sequence[Fingerprint], families: Sequence[str], embedding: EmbeddingOptions
) -> ReferenceVectors:
    """Compact vectors of reference fingerprints (made with the store's embedding options)."""
    return ReferenceVectors(
        tuple(fp.name for fp in fps),
        tuple(families),
        Embedder(embedding).embed_many(list(fps)),
        tuple(layout_of(fp) for fp in fps),
    )


@dataclass(frozen=True)
class StoreVerdicts:
    """Per store row, in store order.

    Attributes:
        nearest: int32 index of the nearest reference.
        similarity: float32 approximate similarity to it.
        runner_up: float32 approximate similarity to the nearest reference of another family (-inf if none
            among the two nearest).
        unknown: bool, beyond the threshold (all False when there is none).
        needs_exact: bool, see the module docstring.
        threshold: the distance threshold used, or None.
    """

    nearest: np.ndarray
    similarity: np.ndarray
    runner_up: np.ndarray
    unknown: np.ndarray
    needs_exact: np.ndarray
    threshold: float | None


def classify_store(
    store: Store,
    refs: ReferenceVectors,
    threshold: float | None = None,
    margin: float = DEFAULT_MARGIN,
    block_rows: int = BLOCK_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> StoreVerdicts:
    """Nearest reference of every store row.

    Args:
        store: the opened store.
        refs: the references (same embedding options as the store).
        threshold: the unknown distance threshold (`1 - similarity`), e.g. calibrated on the references; None
            for no unknown.
        margin: similarity margin within which a verdict is flagged for the exact pipeline.
        block_rows: rows per matrix product.
        progress: called as `progress(rows_done, rows_total)` after each block.

    Returns:
        The verdicts.

    Raises:
        ClassificationError: references of another dimension than the store's.
    """
    if refs.vectors.shape[1] != store.info.embedding.dim:
        raise ClassificationError(
            f"references of dimension {refs.vectors.shape[1]} against a store of dimension {store.info.embedding.dim}"
        )
    if block_rows < 1 or margin < 0:
        raise ValueError("block_rows must be >= 1 and margin >= 0")
    n = len(store)
    split = store.info.embedding.dim - store.info.embedding.family_dims
    ref_id = np.ascontiguousarray(refs.vectors[:, :split].T, dtype=np.float32)  # [d_id, R]
    ref_fam = np.ascontiguousarray(refs.vectors[:, split:].T, dtype=np.float32)  # [d_fam, R]
    factors = _overlap_factors(store.info.layouts, refs.layouts)  # [store layouts, R]
    codes = np.array(sorted(set(refs.families)))
    family_code = np.searchsorted(codes, np.array(refs.families))
    nearest = np.zeros(n, np.int32)
    best = np.zeros(n, np.float32)
    runner = np.zeros(n, np.float32)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        block = np.asarray(store.vectors[start:stop], dtype=np.float32)
        sim = block[:, :split] @ ref_id
        fam = block[:, split:] @ ref_fam
        if factors is None:
            sim += fam
        else:
            lay = np.asarray(store.layouts[start:stop])
            for code in np.unique(lay):
                rows = lay == code
                sim[rows] += fam[rows] * factors[code]
        del fam
        top = np.argmax(sim, axis=1)
        rows = np.arange(stop - start)
        best[start:stop] = sim[rows, top]
        nearest[start:stop] = top
        if sim.shape[1] > 1:
            sim[rows, top] = -np.inf
            second = np.argmax(sim, axis=1)
            other = family_code[second] != family_code[top]
            runner[start:stop] = np.where(other, sim[rows, second], -np.inf)
        else:
            runner[start:stop] = -np.inf
        if progress is not None:
            progress(stop, n)
    if threshold is None:
        unknown = np.zeros(n, bool)
        near_threshold = np.zeros(n, bool)
    else:
        level = np.float32(1.0 - threshold)
        unknown = best < level
        near_threshold = np.abs(best - level) < margin
    needs_exact = near_threshold | (best - runner < margin)
    return StoreVerdicts(nearest, best, runner, unknown, needs_exact, threshold)


def _overlap_factors(store_layouts: list[dict], ref_layouts: Sequence[dict]) -> np.ndarray | None:
    """`[store layouts, R]` family-level factors; None when every one is 1 (one tokenizer, or ids only)."""
    if not store_layouts:
        return None
    cache: dict[tuple[int, int], float] = {}
    ref_keys = [_layout_key(lay) for lay in ref_layouts]
    out = np.ones((len(store_layouts), len(ref_layouts)), np.float32)
    for i, lay in enumerate(store_layouts):
        key_i = _layout_key(lay)
        for j, ref in enumerate(ref_layouts):
            pair = (key_i, ref_keys[j])
            if pair not in cache:
                cache[pair] = layout_overlap(lay, ref)
            out[i, j] = cache[pair]
    return None if np.all(out == 1.0) else out


def _layout_key(layout: dict) -> int:
    return hash((layout["basis"], tuple(layout["tokens"]), layout["seed"]))


def verdict_rows(store: Store, refs: ReferenceVectors, verdicts: StoreVerdicts) -> list[dict]:
    """One JSON-ready row per store row (for CSV and JSON output)."""
    names = store.names()
    ref_names = np.array(refs.names, dtype=object)
    ref_families = np.array(refs.families, dtype=object)
    nearest = ref_names[verdicts.nearest]
    families = np.where(verdicts.unknown, "unknown", ref_families[verdicts.nearest])
    return [
        {
            "model": m,
            "nearest": r,
            "similarity": round(float(s), 4),
            "family": f,
            "nearest_family": nf,
            "needs_exact": bool(x),
        }
        for m, r, s, f, nf, x in zip(
            names,
            nearest,
            verdicts.similarity,
            families,
            ref_families[verdicts.nearest],
            verdicts.needs_exact,
        )
    ]
