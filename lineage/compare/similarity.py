"""Similarity of two fingerprints' sketches, and the distance every lineage decision rests on.

Per circuit, sketches are compared by correlation over the anchors both fingerprints share. Model-level
circuits (`embed`, `head`) give one correlation each. Layer circuits (`qk`, `vo`, `ffn`) give a layer-by-
layer correlation matrix, and the best order-preserving one-to-one matching of layers is taken (a
longest-common-subsequence style alignment), averaged over the shallower model's layers: a model with
layers removed still lines up with its parent, and models of different depths compare by their best
matching layers. The similarity is a weighted mean over circuits (`CIRCUIT_WEIGHTS`; a circuit only one
side has counts 0), and the distance is `1 - similarity`, in [0, 2]: 0 for the same function, about 0.5
for another size of the same family, about 1 for unrelated models.

Which anchors are shared depends on how they were chosen (`lineage.probe.anchors`):
- both fingerprints anchored by token string (`tokens` basis): the token strings both hold, found by
  string, so a vocabulary permutation, extension or trimming lines the same tokens up;
- otherwise, by id on the id anchors: two models without a tokenizer (`ids` basis), or one with and one
  without, which cannot be mapped by string. A token-anchored fingerprint carries id anchors for this: the
  pair compares as two tokenizer-less models would, right when the two share a vocabulary order and blind
  to a permuted one. `comparison_basis` says which was used, so a verdict can say so.
Fewer than `MIN_SHARED_ANCHORS` shared anchors is nothing to compare: similarity 0 (unrelated).

On the token basis the family level needs one more factor. By ids, two models agree on the output
embedding only if their tokenizers give the same ids to the same tokens, i.e. share the tokenizer; by
string, two unrelated tokenizers trained on similar text share many tokens, and the geometry of those
tokens follows the language, not the family (0.4-0.5 correlation between unrelated catalog families). So
the `unembed` similarity is scaled by a steep power of the share of the smaller vocabulary the other holds,
estimated from the anchor samples themselves: 1 for one tokenizer and for a permuted, extended or trimmed
copy of it, about 0.5 for two tokenizers trained apart. As by ids, only a shared tokenizer then carries the
family level. The identity level is left as measured: what weights share does not depend on how much
vocabulary they share. (`vocabulary_overlap`, which the `related` rule reads, is the symmetric Jaccard index
instead: a small vocabulary inside a large one is not "all shared".)

All suspects are compared with all references in batched array operations (fingerprints grouped by
identical anchor lists), chunked to bound memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cached_property

import numpy as np

from lineage.errors import ClassificationError
from lineage.features.sketch import LAYER_CIRCUITS, MODEL_CIRCUITS, normal_forms
from lineage.fingerprint import Fingerprint
from lineage.probe.anchors import token_rank

CIRCUIT_ORDER: tuple[str, ...] = (*MODEL_CIRCUITS, *LAYER_CIRCUITS)
#: Half the similarity is the family level (the output embedding, which a family's tokenizer and data shape
#: and all its sizes share), half the identity level (every circuit alike, which only one lineage of weights
#: shares). A derivative agrees on both; another size of its family on the first; an unrelated model on none.
CIRCUIT_WEIGHTS: dict[str, float] = {
    c: 0.5 / len(CIRCUIT_ORDER) + (0.5 if c == "unembed" else 0.0) for c in CIRCUIT_ORDER
}
MIN_SHARED_ANCHORS = 8
#: The family level counts `vocabulary_overlap ** FAMILY_OVERLAP_POWER`: one tokenizer (overlap 1) keeps it
#: whole, 0.95 keeps two thirds, two tokenizers trained apart (0.5-0.6) under 2%.
FAMILY_OVERLAP_POWER = 8
_CHUNK = 256


def _probe_key(fp: Fingerprint) -> tuple:
    return tuple(fp.settings.get(k) for k in ("pipeline", "seed"))


def _check(fps: Sequence[Fingerprint]) -> None:
    for fp in fps:
        if not fp.has_sketches:
            raise ClassificationError(
                f"'{fp.name}' has no lineage sketches (a published feature file?): use --method tensorguard"
            )
    key_ids = {str(fp.settings.get("key_id", "public")) for fp in fps}
    if len(key_ids) > 1:
        # Probes of another key are other random vectors: nothing to compare, and never to be mistaken for far.
        raise ClassificationError(
            f"fingerprints made with different probe keys (key ids {', '.join(sorted(key_ids))}): fingerprint "
            "suspects and references with the same --key (a reference pack records its key id)"
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


def comparison_basis(a: Fingerprint, b: Fingerprint) -> str:
    """How two fingerprints are compared: "tokens" (by shared token strings) or "ids" (by shared ids)."""
    return "tokens" if a.anchor_basis == b.anchor_basis == "tokens" else "ids"


def comparison_note(a: Fingerprint, b: Fingerprint) -> str | None:
    """A sentence for a verdict when the pair is compared by ids (None when by token strings).

    Example:
        >>> comparison_note(suspect, reference)  # doctest: +SKIP
        "compared by token ids: no tokenizer for 'suspect'; a permuted vocabulary would go unseen"
    """
    if comparison_basis(a, b) == "tokens":
        return None
    missing = [fp.name for fp in (a, b) if fp.anchor_basis == "ids"]
    names = " and ".join(f"'{n}'" for n in dict.fromkeys(missing))
    return f"compared by token ids: no tokenizer for {names}; a permuted vocabulary would go unseen"


class _Layout:
    """One group's anchor layout: its token strings and its id anchors, with their positions."""

    def __init__(self, fp: Fingerprint) -> None:
        ids = np.asarray(fp.anchors, dtype=np.int64)
        start = fp.id_anchor_start
        self.tokens: tuple[str, ...] = fp.anchor_tokens
        self.ids = ids[start:]
        self.id_offset = start
        self.size = len(ids)
        self.key = (self.tokens, self.ids.tobytes(), self.size)
        self.seed = int(fp.settings.get("seed") or 0)

    @cached_property
    def ranks(self) -> dict[str, bytes]:
        """The seeded hash of each token anchor, the order its MinHash sample was drawn in."""
        return {t: token_rank(t, self.seed) for t in self.tokens}


def _samples(a: _Layout, b: _Layout) -> tuple[set[str], set[str]]:
    """The two token samples cut at the smaller of their largest hashes, where both are complete.

    Each side's token anchors are all its tokens whose hash falls below its largest anchor hash (untrained
    rows aside), so below the smaller of the two largest hashes both samples hold every token of their
    vocabulary: counts there estimate the vocabularies' intersection and union without bias.
    """
    ra, rb = a.ranks, b.ranks
    top = min(max(ra.values()), max(rb.values()))
    return {t for t, r in ra.items() if r <= top}, {t for t, r in rb.items() if r <= top}


def _containment(a: _Layout, b: _Layout) -> float:
    """Share of the smaller vocabulary held by the other (1.0 for ids): what the family level scales by, so a
    vocabulary extended or trimmed around the same tokens keeps its family geometry."""
    if not (a.tokens and b.tokens):
        return 1.0
    sa, sb = _samples(a, b)
    return len(sa & sb) / max(1, min(len(sa), len(sb)))


def _jaccard(a: _Layout, b: _Layout) -> float:
    """Shared tokens over the union of the two vocabularies (1.0 for ids): symmetric, so a 2k vocabulary
    inside a 49k one overlaps it by 4%, not 100%."""
    if not (a.tokens and b.tokens):
        return 1.0
    sa, sb = _samples(a, b)
    return len(sa & sb) / max(1, len(sa | sb))


def vocabulary_overlap(a: Fingerprint, b: Fingerprint) -> float | None:
    """Estimated Jaccard overlap of two vocabularies (shared over union); None unless compared by tokens.

    Example:
        >>> vocabulary_overlap(fp, permuted_copy)  # doctest: +SKIP
        1.0
    """
    if comparison_basis(a, b) != "tokens":
        return None
    return _jaccard(_Layout(a), _Layout(b))


def _shared_positions(a: _Layout, b: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into each side's anchors) of the anchors both share, in one common order."""
    if a.tokens and b.tokens:
        where_b = {t: j for j, t in enumerate(b.tokens)}
        pairs = [(i, where_b[t]) for i, t in enumerate(a.tokens) if t in where_b]
        ia = np.array([i for i, _ in pairs], dtype=np.int64)
        ib = np.array([j for _, j in pairs], dtype=np.int64)
        return ia, ib
    _, ia, ib = np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)
    return ia + a.id_offset, ib + b.id_offset


def shared_positions(a: Fingerprint, b: Fingerprint) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into `a.anchors` and `b.anchors`) of the anchors two fingerprints share, in one order."""
    return _shared_positions(_Layout(a), _Layout(b))


def _stack(fps: Sequence[Fingerprint], rows: Sequence[int], circuit: str, keep: np.ndarray | None) -> np.ndarray:
    return normal_forms(np.stack([fps[i].sketches[circuit] for i in rows]), keep)


class _NormalFormCache:
    """The references' normal forms, kept between calls.

    A classifier compares each suspect with the same references one call at a time (so that a verdict
    cannot depend on the batch); recomputing the references' normal forms every time would be most of the
    cost. Entries are keyed by the fingerprints' identities and hold the fingerprints themselves, so an id is
    never reused while its entry lives; the least recently used go first.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: dict[tuple, tuple[tuple[Fingerprint, ...], np.ndarray]] = {}

    def get(self, fps: Sequence[Fingerprint], rows: Sequence[int], circuit: str, keep: np.ndarray | None) -> np.ndarray:
        chosen = tuple(fps[i] for i in rows)
        key = (tuple(id(fp) for fp in chosen), circuit, None if keep is None else keep.tobytes())
        hit = self._entries.pop(key, None)
        if hit is not None:
            self._entries[key] = hit  # most recently used last: the references stay, one-off suspects go
            return hit[1]
        value = _stack(fps, rows, circuit, keep)
        if len(self._entries) >= self.size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (chosen, value)
        return value


_FORMS = _NormalFormCache()


def _block_similarity(
    a: Sequence[Fingerprint],
    b: Sequence[Fingerprint],
    keep_a: np.ndarray | None,
    keep_b: np.ndarray | None,
    overlap: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Similarities `[len(a), len(b)]` for fingerprints that all share one anchor layout per side."""
    total = np.zeros((len(a), len(b)))
    weights = CIRCUIT_WEIGHTS if weights is None else weights
    for circuit in CIRCUIT_ORDER:
        if not weights.get(circuit):
            continue
        by_depth_a, by_depth_b = defaultdict(list), defaultdict(list)
        for i, fp in enumerate(a):
            if circuit in fp.sketches:
                by_depth_a[fp.sketches[circuit].shape[0]].append(i)
        for j, fp in enumerate(b):
            if circuit in fp.sketches:
                by_depth_b[fp.sketches[circuit].shape[0]].append(j)
        normed_b = {lb: _FORMS.get(b, jb, circuit, keep_b) for lb, jb in by_depth_b.items()}  # [m, Lb, D]
        for la, ia in by_depth_a.items():
            for start in range(0, len(ia), _CHUNK):
                chunk = ia[start : start + _CHUNK]
                na = _FORMS.get(a, chunk, circuit, keep_a)  # [n, La, D], normalised once per chunk
                for lb, jb in by_depth_b.items():
                    nb = normed_b[lb]
                    # One matrix product for every layer pair of every model pair: [n*La, m*Lb].
                    corr = (na.reshape(-1, na.shape[-1]) @ nb.reshape(-1, nb.shape[-1]).T).astype(np.float64)
                    corr = corr.reshape(len(chunk), la, len(jb), lb).transpose(0, 2, 1, 3)
                    sim = align_layers(corr) if circuit in LAYER_CIRCUITS else corr[..., 0, 0]
                    if circuit == "unembed":
                        sim = sim * overlap**FAMILY_OVERLAP_POWER  # the family level: see the module docstring
                    total[np.ix_(chunk, jb)] += weights[circuit] * sim
    return total


def sketch_similarity_matrix(
    a: Sequence[Fingerprint], b: Sequence[Fingerprint], weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Similarities in [-1, 1] of every fingerprint of `a` to every one of `b`.

    Args:
        a, b: fingerprints with sketches.
        weights: circuit -> weight of the mean (`CIRCUIT_WEIGHTS` when None; a circuit left out counts 0).

    Returns:
        float64 `[len(a), len(b)]`.

    Raises:
        ClassificationError: a fingerprint has no sketches.
    """
    _check([*a, *b])
    out = np.zeros((len(a), len(b)))
    groups_a: dict[tuple, list[int]] = defaultdict(list)
    groups_b: dict[tuple, list[int]] = defaultdict(list)
    layouts: dict[tuple, _Layout] = {}
    for groups, fps in ((groups_a, a), (groups_b, b)):
        for i, fp in enumerate(fps):
            layout = _Layout(fp)
            layouts.setdefault(layout.key, layout)
            groups[layout.key].append(i)
    for key_a, ia in groups_a.items():
        for key_b, jb in groups_b.items():
            layout_a, layout_b = layouts[key_a], layouts[key_b]
            keep_a, keep_b = _shared_positions(layout_a, layout_b)
            if len(keep_a) < MIN_SHARED_ANCHORS:
                continue  # no common tokens: nothing to compare, similarity 0 (unrelated)
            if len(keep_a) == layout_a.size == layout_b.size and np.array_equal(keep_a, keep_b):
                keep_a = keep_b = None  # one layout, every anchor shared: no need to subset
            overlap = _containment(layout_a, layout_b)
            out[np.ix_(ia, jb)] = _block_similarity(
                [a[i] for i in ia], [b[j] for j in jb], keep_a, keep_b, overlap, weights
            )
    return out


def sketch_distance_matrix(a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> np.ndarray:
    """Distances `1 - similarity` in [0, 2] of every fingerprint of `a` to every one of `b`."""
    return np.clip(1.0 - sketch_similarity_matrix(a, b), 0.0, 2.0)
