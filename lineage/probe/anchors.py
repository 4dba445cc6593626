"""Embedding-anchored probes: which token ids the circuit probes start from.

Anchoring the probes on the model's own token embeddings is what makes the circuit sketches follow an
orthogonal rotation of the residual stream (HuRef's insight): a rotated model rotates its embeddings and
its projections alike, so products such as `e_i W_q^T W_k e_j` do not move. The ids are the first `count`
entries of one fixed seeded permutation of `[0, ANCHOR_SPACE)` that fall inside the vocabulary, so models
of one tokenizer share them, and a vocabulary extension keeps most of them (comparisons use the ids two
fingerprints share).

The lowest ids are left out: in every modern tokenizer they are bytes (GPT-2, Llama 3, Qwen byte-level BPE)
or special and byte-fallback tokens (SentencePiece: Llama 2, Mistral, Gemma). Their meaning is a shared
convention, not something a family learned from its data, so two unrelated byte-level tokenizers agree on
them and would make unrelated families look alike. The skipped prefix is 256 ids, or a quarter of a small
vocabulary.
"""

from __future__ import annotations

import numpy as np

ANCHOR_SPACE = 32768
BYTE_IDS = 256


def anchor_ids(vocab_size: int, count: int, seed: int) -> np.ndarray:
    """The sorted token ids probed for a vocabulary of `vocab_size`.

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
