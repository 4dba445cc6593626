"""A trimmed vocabulary is a near-exact copy of its original: the original's relatives hang from the original."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lineage.fingerprint import Fingerprint
from lineage.fingerprint.format import ModelSummary
from tests.tree.synthetic import base, child

TOKENS = tuple(f"tok{i}" for i in range(16))  # the synthetic fingerprints' 16 anchors


def _vocab(fp: Fingerprint, size: int, ids: np.ndarray) -> Fingerprint:
    """`fp` with a vocabulary of `size` tokens, its anchor tokens at `ids`."""
    summary = ModelSummary("LlamaForCausalLM", 2, 64, size, 10_000, ("F32",), "0" * 64, 1)
    return replace(fp, summary=summary, anchor_basis="tokens", anchor_tokens=TOKENS, anchors=ids.astype(np.int64))


def _family() -> tuple[Fingerprint, Fingerprint, Fingerprint, Fingerprint]:
    """A base, its fine-tune, the fine-tune with a trimmed vocabulary (the same decoder weights, its tokens
    renumbered, its sketches a little nearer the base's: with tokens gone, seed 2's trimmed copy lay 0.004
    nearer its original's parent than its original did), and the fine-tune with a permuted vocabulary."""
    rng = np.random.default_rng(21)
    ids = np.arange(16) + 100
    b = _vocab(base("base", rng), 200, ids)
    ft = _vocab(child("ft", b, rng), 200, ids)
    nearer = {k: (0.97 * v + 0.03 * b.sketches[k]).astype(np.float32) for k, v in ft.sketches.items()}
    trimmed = _vocab(replace(ft, name="trimmed", sketches=nearer), 150, ids - 40)
    permuted = _vocab(replace(ft, name="permuted"), 200, ids[::-1].copy())
    return b, ft, trimmed, permuted


def test_a_trimmed_copy_has_its_original_and_a_permuted_one_none() -> None:
    from lineage.tree.edges import copy_originals, measure_pairs

    fps = list(_family())
    pairs = measure_pairs(fps, [(1, 2), (1, 3), (2, 3)], 1.0)
    assert all(p.raw == 0.0 for p in pairs)
    assert copy_originals(fps, pairs) == {2: 1}  # the trimmed copy's original is the fine-tune; nothing tells
    # which of the fine-tune and its permuted copy is the original


def test_the_base_hangs_from_the_fine_tune_not_from_its_trimmed_copy() -> None:
    from lineage.compare.similarity import sketch_distance_matrix
    from lineage.tree import build_tree
    from lineage.tree.edges import RENUMBERED

    b, ft, trimmed, _ = _family()
    near_ft, near_trimmed = sketch_distance_matrix([b], [ft, trimmed])[0]
    assert near_ft - near_trimmed > RENUMBERED  # by its length alone, the base is nearer the trimmed copy
    tree = build_tree([b, ft, trimmed])
    assert sorted((e.parent, e.child, e.relation) for e in tree.edges) == [
        ("base", "ft", "finetune"), ("ft", "trimmed", "vocabulary-edited")]
