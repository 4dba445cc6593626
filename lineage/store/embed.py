"""Compact vectors: a fixed-length embedding of a fingerprint whose dot products approximate its similarity.

`lineage.compare.similarity` compares two fingerprints circuit by circuit: the correlation of the
double-centred off-diagonal normal forms of their `[L, P, P]` sketches over the anchors both share, layers
aligned by the best monotone matching, a weighted mean over circuits (`CIRCUIT_WEIGHTS`). That is exact but
costs a layer alignment per pair; a million suspects against a thousand references needs one matrix
product instead. The compact vector is built so that `embed(a) . embed(b)` estimates that similarity:

* each model-level circuit (`embed`, `head`, `unembed`) contributes its normal form, scaled by
  `sqrt(weight)`;
* each layer circuit (`qk`, `vo`, `ffn`) is depth-pooled: its layers are split into `depth_bins` groups of
  equal relative depth, the normal forms of a group averaged and re-normalised, and each group scaled by
  `sqrt(weight / depth_bins)`; group k of one model meets group k of the other, which stands in for the
  monotone matching when the two models have similar depth profiles;
* the parts, each with its own random signs, are summed and randomly projected to `dim` dimensions
  (Johnson-Lindenstrauss). The projection of the entry for token pair `(i, j)` is a Gaussian vector drawn
  from a counter-based generator keyed by the two token ids, so the same token pair projects alike in
  every anchor layout, and the pairs two layouts share line up.

The family part (`unembed`) takes its own last dimensions: the exact similarity scales it by
`vocabulary_overlap ** FAMILY_OVERLAP_POWER`, a factor of the pair of tokenizers, which the store applies per
pair of anchor layouts (`layout_overlap`; a store holds few distinct tokenizers) after the matrix product.

What it approximates, honestly: between fingerprints of one anchor layout whose layer circuits have
similar depth profiles, the expected dot product is the weighted mean over circuits of the correlations of
depth groups, which stands in for the exact monotone layer matching; for unrelated models the exact
matching takes the best of many near-zero correlations and so sits a little above it. Each half of the
vector is rescaled to the norm it estimates, so a model meets itself at exactly 1 and the projection noise
is smallest for similar models (about `(1 - s^2) / sqrt(dim / 2)`). Across anchor layouts only the token
pairs both hold meet, without re-centring on them. Measured against `sketch_similarity_matrix` on the mini
catalog at dim 256 (tests/refs/test_pack_store.py): RMS error 0.012 for related pairs, 0.047 for unrelated
ones (0.015 and 0.071 at dim 128). The store flags verdicts near a decision boundary for the exact
pipeline (`lineage.store.nearest`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lineage.compare.similarity import CIRCUIT_ORDER, CIRCUIT_WEIGHTS, FAMILY_OVERLAP_POWER
from lineage.features.sketch import LAYER_CIRCUITS, normal_forms
from lineage.fingerprint import Fingerprint
from lineage.probe.anchors import token_rank

EMBEDDING_VERSION = 1
#: The family-level circuit: its part of the vector is kept apart (the last `family_dims` dimensions), because
#: the exact similarity scales it by the two vocabularies' overlap, a factor of the pair, not of either model.
FAMILY_CIRCUIT = "unembed"


@dataclass(frozen=True)
class EmbeddingOptions:
    """How compact vectors are made; vectors compare only at equal options.

    Attributes:
        dim: vector length (projection noise falls as `1/sqrt(dim)`; classify cost grows as `dim`).
        depth_bins: groups of equal relative depth the layer circuits are pooled into.
        seed: the projection seed.
    """

    dim: int = 256
    depth_bins: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.dim <= 8192:
            raise ValueError("dim must be between 8 and 8192")
        if not 1 <= self.depth_bins <= 64:
            raise ValueError("depth_bins must be between 1 and 64")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")

    @property
    def family_dims(self) -> int:
        """Dimensions of the family part (the last ones); the identity part takes the others. Split in
        proportion to the parts' weights, which minimises the projection noise of their weighted sum."""
        return min(self.dim - 4, max(4, round(self.dim * CIRCUIT_WEIGHTS[FAMILY_CIRCUIT])))

    def to_dict(self) -> dict:
        return {"version": EMBEDDING_VERSION, "dim": self.dim, "depth_bins": self.depth_bins, "seed": self.seed}


def _parts(options: EmbeddingOptions) -> list[tuple[str, int]]:
    """(circuit, bin) of every part, in a fixed order: its index seeds the part's projection."""
    return [(c, k) for c in CIRCUIT_ORDER for k in range(options.depth_bins if c in LAYER_CIRCUITS else 1)]


_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_LAYOUT_CACHE = 8  # anchor layouts whose projection is kept (16 MB each at dim 256 and 128 anchors)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A vectorised 64-bit mixing hash (splitmix64's finaliser): counter-based random numbers."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


class Embedder:
    """Turns fingerprints into compact vectors; caches each anchor layout's projection.

    The projection of token pair `(i, j)` is a Gaussian vector drawn from a counter-based generator keyed by
    the two token ids (and the seed), so it is the same in every anchor layout that holds both ids. Each
    part (circuit, depth group) multiplies its entries by its own random signs before the parts are summed:
    parts then project nearly orthogonally, and one projection of the sum serves them all.

    Args:
        options: the embedding options.

    Example:
        >>> vec = Embedder().embed(fp)  # doctest: +SKIP
        >>> vec.shape  # doctest: +SKIP
        (256,)
    """

    def __init__(self, options: EmbeddingOptions | None = None) -> None:
        self.options = options or EmbeddingOptions()
        self._parts = _parts(self.options)
        self._index = {part: i for i, part in enumerate(self._parts)}
        self._layouts: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _layout(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(G_identity, G_family, signs [parts, pairs])` for anchors of 64-bit labels, pairs in `normal_forms`
        order; the two projections are scaled so that dot products estimate inner products."""
        key = labels.tobytes()
        cached = self._layouts.get(key)
        if cached is not None:
            return cached
        p = len(labels)
        rows, cols = np.nonzero(~np.eye(p, dtype=bool))  # row-major, as `normal_forms` flattens `[..., off]`
        seed = _splitmix64(np.array([self.options.seed * 1000003 + EMBEDDING_VERSION], dtype=np.uint64))[0]
        pair = _splitmix64(labels[rows] ^ _splitmix64(labels[cols] ^ seed))  # [pairs]: ordered pair identity
        dims = np.arange(self.options.dim, dtype=np.uint64)
        bits = _splitmix64(_splitmix64(pair)[:, None] ^ dims[None, :])  # [pairs, dim]
        # Box-Muller on the two 32-bit halves: one standard normal per (pair, dimension).
        u1 = ((bits >> np.uint64(32)).astype(np.float64) + 1.0) / 4294967297.0
        u2 = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) / 4294967296.0
        g = (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
        parts = np.arange(1, len(self._parts) + 1, dtype=np.uint64)
        sign_bits = _splitmix64(pair[None, :] ^ _splitmix64(parts * np.uint64(0xD6E8FEB86659FD93))[:, None])
        signs = np.where(sign_bits & np.uint64(1), np.float32(1.0), np.float32(-1.0))
        split = self.options.family_dims
        # Contiguous halves: the family part projects on the first `split` columns, the identity part on the rest.
        g_fam = np.ascontiguousarray(g[:, :split] / np.float32(np.sqrt(split)))
        g_id = np.ascontiguousarray(g[:, split:] / np.float32(np.sqrt(self.options.dim - split)))
        if len(self._layouts) >= _LAYOUT_CACHE:
            self._layouts.pop(next(iter(self._layouts)))
        self._layouts[key] = (g_id, g_fam, signs)
        return g_id, g_fam, signs

    def embed(self, fp: Fingerprint) -> np.ndarray:
        """The compact vector of one fingerprint (float32 `[dim]`).

        Raises:
            ValueError: the fingerprint has no sketches (a published feature file).
        """
        if not fp.has_sketches:
            raise ValueError(f"'{fp.name}' has no lineage sketches: it has no compact vector")
        keep, labels = anchor_labels(fp)
        g_id, g_fam, signs = self._layout(labels)
        identity = np.zeros(g_id.shape[0], dtype=np.float32)
        family = np.zeros(g_id.shape[0], dtype=np.float32)
        norm2 = {"identity": 0.0, "family": 0.0}  # what each half's squared norm estimates: sum of w |form|^2
        for circuit in CIRCUIT_ORDER:
            if circuit not in fp.sketches:
                continue  # a circuit only one side has counts 0 in the exact similarity too
            forms = normal_forms(np.asarray(fp.sketches[circuit])[None], keep)[0]  # [L, P*(P-1)]
            groups = _pool(forms, self.options.depth_bins) if circuit in LAYER_CIRCUITS else forms[:1]
            scale = np.float32(np.sqrt(CIRCUIT_WEIGHTS[circuit] / len(groups)))
            half = "family" if circuit == FAMILY_CIRCUIT else "identity"
            target = family if half == "family" else identity
            for k, flat in enumerate(groups):
                target += scale * signs[self._index[(circuit, k)]] * flat
                norm2[half] += float(scale) ** 2 * float(flat @ flat)
        return np.concatenate(
            [_rescaled(identity @ g_id, norm2["identity"]), _rescaled(family @ g_fam, norm2["family"])]
        )

    def embed_many(self, fps: list[Fingerprint]) -> np.ndarray:
        """Compact vectors `[n, dim]` of several fingerprints."""
        if not fps:
            return np.zeros((0, self.options.dim), dtype=np.float32)
        return np.stack([self.embed(fp) for fp in fps])


def anchor_labels(fp: Fingerprint) -> tuple[np.ndarray | None, np.ndarray]:
    """The anchor positions a compact vector uses (None: all), and a 64-bit label of each (what identifies it
    across models).

    Fingerprints whose anchors were chosen by token string compare on those strings (the exact similarity
    does so between two such fingerprints), so their token anchors are labelled by string; fingerprints
    anchored by ids (no tokenizer) by id.
    """
    tokens = tuple(getattr(fp, "anchor_tokens", ()) or ())
    ids = np.asarray(fp.anchors, dtype=np.int64)
    if tokens:
        keys = [b"t" + t.encode("utf-8", "surrogatepass") for t in tokens]
        keep = np.arange(len(tokens))
    else:
        start = int(getattr(fp, "id_anchor_start", 0) or 0)
        keep = np.arange(start, len(ids))
        keys = [b"i%d" % int(i) for i in ids[start:]]
    labels = np.array([int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "little") for k in keys], np.uint64)
    return (None if len(keep) == len(ids) else keep), labels


def _pool(forms: np.ndarray, bins: int) -> np.ndarray:
    """`[bins, D]` unit-norm means of the layers of each relative-depth group (a shallow model repeats layers)."""
    depth = forms.shape[0]
    out = np.zeros((bins, forms.shape[1]), dtype=np.float32)
    for k in range(bins):
        lo = (k * depth) // bins
        hi = max(((k + 1) * depth) // bins, lo + 1)
        mean = forms[lo:hi].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if norm > 0:
            out[k] = mean / norm
    return out


def _rescaled(projected: np.ndarray, norm2: float) -> np.ndarray:
    """The projection rescaled to the norm its dot products estimate (`sqrt(norm2)`, the weighted parts' norm).

    A dot product of unit-norm projections estimates a cosine with error about `(1 - cos^2) / sqrt(dim)`,
    small where it matters (a derivative and its base), where the raw dot product errs by `sqrt(2 / dim)`.
    """
    norm = float(np.linalg.norm(projected))
    return (projected * (np.sqrt(norm2) / norm if norm > 0 else 0.0)).astype(np.float32)


def layout_of(fp: Fingerprint) -> dict:
    """The anchor layout of a fingerprint, as far as the family-level overlap needs it (JSON-ready)."""
    tokens = list(getattr(fp, "anchor_tokens", ()) or ())
    return {"basis": "tokens" if tokens else "ids", "tokens": tokens, "seed": int(fp.settings.get("seed") or 0)}


def layout_overlap(a: dict, b: dict) -> float:
    """The family-level factor of two layouts: `overlap ** FAMILY_OVERLAP_POWER`, as the exact similarity has it.

    The overlap is the share of the smaller vocabulary the other holds, estimated from the two bottom-k
    token samples below the smaller of their largest hashes (`lineage.compare.similarity`); 1 unless both
    layouts are by token string.
    """
    if not (a["tokens"] and b["tokens"]):
        return 1.0
    ra = {t: token_rank(t, a["seed"]) for t in a["tokens"]}
    rb = {t: token_rank(t, b["seed"]) for t in b["tokens"]}
    top = min(max(ra.values()), max(rb.values()))
    sa = {t for t, r in ra.items() if r <= top}
    sb = {t for t, r in rb.items() if r <= top}
    return (len(sa & sb) / max(1, min(len(sa), len(sb)))) ** FAMILY_OVERLAP_POWER
