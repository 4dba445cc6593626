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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lineage.compare.lineage import LineageMethod
from lineage.decide.unknown import unknown_threshold
from lineage.decide.verdict import UNKNOWN
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.fingerprint.source import FingerprintSource
from lineage.refs.open import open_references
from lineage.refs.pack import probe_settings
from lineage.store.embed import Embedder, EmbeddingOptions, layout_of, layout_overlap
from lineage.store.store import Store

BLOCK_ROWS = 32768
#: Default margin: about twice the RMS error of the approximate similarity of unrelated pairs at dim 256 (0.047
#: on the mini catalog; 0.018 for related pairs), measured by tests/store/test_embed.py's comparison with
#: `sketch_similarity_matrix`.
DEFAULT_MARGIN = 0.1


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
    factors = _overlap_factors(store.info.layouts, refs.layouts)  # [store layouts, R], None when all 1
    ref_t = np.ascontiguousarray(refs.vectors.T, dtype=np.float32)  # [dim, R]

    def weights(code: int) -> np.ndarray:
        # The family part's factor is a per-(layout, reference) scale: folded into the reference matrix, one
        # product per layout present in a block gives identity + factor * family at the cost of one.
        if factors is None:
            return ref_t
        if code not in scaled:
            w = ref_t.copy()
            w[split:] *= factors[code][None, :]
            scaled[code] = w
        return scaled[code]

    scaled: dict[int, np.ndarray] = {}
    codes = np.array(sorted(set(refs.families)))
    family_code = np.searchsorted(codes, np.array(refs.families))
    nearest = np.zeros(n, np.int32)
    best = np.zeros(n, np.float32)
    runner = np.zeros(n, np.float32)
    for start in range(0, n, block_rows):
        stop = min(n, start + block_rows)
        block, lay = store.block(start, stop)
        present = np.unique(lay) if factors is not None else np.zeros(1, np.uint16)
        if len(present) == 1:
            sim = block @ weights(int(present[0]))
        else:
            sim = np.empty((stop - start, len(refs.names)), np.float32)
            for code in present:
                rows_of = np.nonzero(lay == code)[0]
                sim[rows_of] = block[rows_of] @ weights(int(code))
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


#: The columns of `lineage store classify`: `path` is where the row's fingerprint came from (a file, or
#: `cache:<key>` for a fingerprint cache entry); every row of a store was a readable fingerprint when it was
#: added (`store build` lists the sources it left out), so `status` is `ok`.
VERDICT_FIELDS: tuple[str, ...] = (
    "model", "nearest", "similarity", "family", "nearest_family", "needs_exact", "status", "path",
)  # fmt: skip


def verdict_rows(store: Store, refs: ReferenceVectors, verdicts: StoreVerdicts) -> Iterator[dict]:
    """One JSON-ready row per store row, lazily (a million rows are written, not held)."""
    ref_names = np.array(refs.names, dtype=object)
    ref_families = np.array(refs.families, dtype=object)
    for i, (model, key) in enumerate(zip(store.names(), store.keys())):
        k = int(verdicts.nearest[i])
        yield {
            "model": model,
            "nearest": ref_names[k],
            "similarity": round(float(verdicts.similarity[i]), 4),
            "family": UNKNOWN if verdicts.unknown[i] else ref_families[k],
            "nearest_family": ref_families[k],
            "needs_exact": bool(verdicts.needs_exact[i]),
            "status": "ok",
            "path": key if key.startswith("/") or ":" in key else f"cache:{key}",
        }


def load_references(
    reference: str | Path,
    embedding: EmbeddingOptions,
    settings: dict | None,
    source: FingerprintSource | None = None,
    verify: bool = True,
) -> tuple[ReferenceVectors, np.ndarray]:
    """The references of a manifest or pack as compact vectors, with the exact distances among them.

    Args:
        reference: a manifest CSV, a reference pack folder, or `builtin`.
        embedding: the store's embedding options.
        settings: the store's probe settings (None for an empty store); references must share them.
        source: how references that are models are fingerprinted (defaults when None).
        verify: check a pack's files against their sha256 first.

    Returns:
        `(ReferenceVectors, reference distance matrix [R, R])`.

    Raises:
        ManifestError: bad manifest. ClassificationError: a reference failed, or other probe settings.
    """
    from lineage.compare.similarity import sketch_distance_matrix

    manifest = open_references(reference, verify=verify)
    outcomes = (source or FingerprintSource()).gather([(r.name, r.path, r) for r in manifest.references])
    failed = [f"{o.name}: {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise ClassificationError(f"{manifest.path}: reference(s) could not be fingerprinted: " + "; ".join(failed))
    fps = [o.fingerprint for o in outcomes]
    for fp in fps:
        if not fp.has_sketches:
            raise ClassificationError(f"reference '{fp.name}' has no lineage sketches: it cannot classify a store")
        if settings is not None and probe_settings(fp) != settings:
            raise ClassificationError(
                f"reference '{fp.name}' was fingerprinted with other probe settings than the store's fingerprints: "
                "rebuild the pack or the store with one lineage version"
            )
    refs = reference_vectors(fps, [o.key.family or o.key.name for o in outcomes], embedding)
    return refs, sketch_distance_matrix(fps, fps)


def store_threshold(rule: str | float, distances: np.ndarray, families: Sequence[str]) -> float | None:
    """The similarity-space unknown threshold of `rule` (`lineage.decide.unknown`) for references at these
    sketch distances; None when the rule never calls a model unknown.

    The store compares by lineage's sketch distances, so `paper` is refused as it is for `--method lineage`.

    Raises:
        ClassificationError: `paper` (lineage's method has no published threshold).
    """
    threshold = unknown_threshold(rule, distances, list(families), LineageMethod()).threshold
    return None if threshold == float("inf") else threshold

