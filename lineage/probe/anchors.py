"""Embedding-anchored probes: which tokens the circuit probes start from.

Anchoring the probes on the model's own token embeddings is what makes the circuit sketches follow an
orthogonal rotation of the residual stream (HuRef's insight): a rotated model rotates its embeddings and
its projections alike, so products such as `e_i W_q^T W_k e_j` do not move.

Anchors are chosen by token *string* when the model has a vocabulary (its `tokenizer.json`): the `count`
ordinary tokens whose seeded hash of the string is smallest, a MinHash-style sample. It does not depend on
ids, so a vocabulary permuted along with the embedding and head rows (the same function on text) picks the
same strings, and two vocabularies pick the same strings in proportion to their overlap, so an extension
or a trimming keeps most anchors. The strings are stored sorted, so two models of one vocabulary hold
their sketches in the same order whatever their ids.

Two kinds of token are never anchors:
- what every tokenizer shares by convention rather than learns from its data: single characters and
  bytes (GPT-2, Llama 3 and Qwen byte-level BPE start with the 256 bytes; SentencePiece's byte fallback
  writes them `<0x0A>`), and special, added or control tokens (left out by `Vocabulary.ordinary_ids`).
  Two unrelated byte-level tokenizers agree on them and would make unrelated families look alike;
- untrained rows (reserved or unused tokens a model never saw): their embedding is its initialisation,
  far shorter than a trained row. A few candidates beyond `count` are read to judge it: `count + count/4`
  rows of a 128k-vocabulary embedding, not the matrix.

Without a vocabulary the anchors are ids: the first `count` entries of one fixed seeded permutation of
`[0, ANCHOR_SPACE)` that fall inside the vocabulary, skipping the lowest ids (bytes and special tokens in
every modern tokenizer, the same convention as above), 256 of them or a quarter of a small vocabulary.
A token-anchored fingerprint carries these id anchors too, after its token anchors: a fingerprint of a
model shipped without a readable tokenizer can still be compared with it, by ids (see
`lineage.compare.similarity`). The sketches of the union cost one pass over the weights as before; only
the small `P x P` products grow.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lineage.io.vocab import Vocabulary

ANCHOR_SPACE = 32768
BYTE_IDS = 256
#: Fewer token anchors than this (a tiny or mostly special vocabulary): anchor by ids instead.
MIN_TOKEN_ANCHORS = 8
#: A candidate row shorter than this share of the median candidate row is untrained (reserved, unused).
UNTRAINED_NORM_RATIO = 0.2
BASES: tuple[str, ...] = ("tokens", "ids")
_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")

RowNorms = Callable[[Sequence[int]], np.ndarray]


@dataclass(frozen=True)
class Anchors:
    """The anchors of one model.

    Attributes:
        ids: int64 `[T + I]` row ids in this model: the `T` token anchors (in the order of `tokens`),
            then the `I` id anchors (ascending). `T = 0` for the `ids` basis.
        tokens: canonical strings of the token anchors, sorted.
        basis: "tokens" (chosen by string) or "ids" (no vocabulary, or too few ordinary tokens).
    """

    ids: np.ndarray
    tokens: tuple[str, ...]
    basis: str

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"anchor basis {self.basis!r}: use one of {BASES}")
        if (self.basis == "tokens") != bool(self.tokens) or len(self.tokens) > len(self.ids):
            raise ValueError("token anchors must be given exactly for the tokens basis, one id each")
        if list(self.tokens) != sorted(set(self.tokens)):
            raise ValueError("anchor tokens must be distinct and sorted")


def anchor_ids(vocab_size: int, count: int, seed: int) -> np.ndarray:
    """The sorted token ids probed for a vocabulary of `vocab_size` when anchoring by ids.

    Args:
        vocab_size: rows of the embedding.
        count: how many anchors (fewer when the vocabulary is smaller).
        seed: the anchor seed (part of the probe settings).

    Returns:
        int64 array of at most `count` distinct ids, ascending.
    """
    if vocab_size <= 0 or count <= 0:
        raise ValueError("vocab_size and count must be positive")
    perm = np.random.default_rng(seed).permutation(ANCHOR_SPACE)
    first = min(BYTE_IDS, vocab_size // 4)
    inside = perm[(perm < vocab_size) & (perm >= first)][:count]
    if len(inside) < count and vocab_size > ANCHOR_SPACE:
        inside = perm[:count]
    return np.sort(inside).astype(np.int64)


def is_conventional(token: str) -> bool:
    """Whether a canonical token string is one every tokenizer has by convention (a character or a byte)."""
    n = len(token)
    if n <= 1:
        return True
    if token[0] == "\x00":  # a byte-level piece that is not UTF-8 on its own: count its bytes
        return n <= 2
    return n == 6 and token.startswith("<0x") and _BYTE_FALLBACK.fullmatch(token) is not None


def _rank_key(seed: int) -> bytes:
    # Any non-negative seed, however large, gives a valid 16-byte key.
    return hashlib.blake2b(str(seed).encode(), digest_size=16).digest()


def token_rank(token: str, seed: int) -> bytes:
    """The seeded hash that orders token strings for the MinHash sample (same on every machine)."""
    return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8, key=_rank_key(seed)).digest()


def token_candidates(vocab: Vocabulary, limit: int, seed: int) -> list[tuple[str, int]]:
    """Ordinary, non-conventional tokens with ids below `limit`, as `(string, id)` in seeded hash order."""
    tokens, key, blake2b = vocab.tokens, _rank_key(seed), hashlib.blake2b
    ids = [i for i in vocab.ordinary_ids(limit) if not is_conventional(tokens[i])]
    # `token_rank` inlined: this runs on every token of the vocabulary (128k for Llama 3).
    ranks = [blake2b(tokens[i].encode("utf-8", "surrogatepass"), digest_size=8, key=key).digest() for i in ids]
    order = sorted(range(len(ids)), key=ranks.__getitem__)
    if any(ranks[x] == ranks[y] for x, y in zip(order, order[1:])):
        # Ties of an 8-byte hash are all but impossible; the string breaks them so the order is total.
        order = sorted(range(len(ids)), key=lambda k: (ranks[k], tokens[ids[k]]))
    return [(tokens[ids[k]], ids[k]) for k in order]


def _trained_tokens(candidates: list[tuple[str, int]], count: int, row_norms: RowNorms) -> list[tuple[str, int]]:
    """The first `count` candidates whose embedding row is trained, reading as few rows as it can."""
    extra = max(16, count // 4)
    chosen: list[tuple[str, int]] = []
    reference: float | None = None
    start = 0
    while len(chosen) < count and start < len(candidates):
        batch = candidates[start : start + (count - len(chosen)) + extra]
        start += len(batch)
        norms = np.asarray(row_norms([i for _, i in batch]), dtype=np.float64)
        if reference is None:
            # The first batch sets the typical norm: a sample of ordinary tokens, mostly trained ones.
            reference = float(np.median(norms))
        chosen += [p for p, n in zip(batch, norms) if n >= UNTRAINED_NORM_RATIO * reference]
        extra *= 2  # many untrained rows in a row: read further ahead next time
    return chosen[:count]


def choose_anchors(
    vocab: Vocabulary | None, limit: int, count: int, seed: int, row_norms: RowNorms | None = None
) -> Anchors:
    """The anchors of a model whose embedding (and head) have `limit` rows.

    Args:
        vocab: the model's vocabulary; None anchors by ids.
        limit: rows every anchored matrix has (a vocabulary's ids at or above it are never anchors).
        count: how many anchors of each kind (fewer when the vocabulary is smaller).
        seed: the anchor seed (part of the probe settings).
        row_norms: norms of the embedding rows of the given ids (to skip untrained rows); None skips
            no row.

    Returns:
        Token anchors followed by id anchors, or id anchors alone.
    """
    by_id = anchor_ids(limit, count, seed)
    if vocab is None:
        return Anchors(by_id, (), "ids")
    candidates = token_candidates(vocab, limit, seed)
    picked = _trained_tokens(candidates, count, row_norms) if row_norms else candidates[:count]
    if len(picked) < MIN_TOKEN_ANCHORS:
        return Anchors(by_id, (), "ids")
    picked.sort()
    ids = np.array([i for _, i in picked] + by_id.tolist(), dtype=np.int64)
    return Anchors(ids, tuple(s for s, _ in picked), "tokens")
