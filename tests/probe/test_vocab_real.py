"""Token anchors on the real SmolLM2-135M-Instruct (49152 tokens, a real byte-level `tokenizer.json`).

A thief who permutes the vocabulary (embedding rows and tokenizer alike) keeps the model's function on
text; the copy must stay on its parent. Trimming a tenth of the tokens must keep it close, and a copy
shipped without its tokenizer falls back to ids and says so. The copies (540 MB each) are written once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.catalog.vocab import permute_vocabulary, trim_vocabulary
from lineage.compare.similarity import comparison_basis, comparison_note, sketch_distance_matrix
from lineage.fingerprint import Fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.real import smollm2_folder

pytest.importorskip("tokenizers")
pytestmark = pytest.mark.slow  # two 540 MB copies of the real model, fingerprinted: about two minutes
CPU = FingerprintOptions(device="cpu")
TEXT = "The quick brown fox jumps over the lazy dog. Photosynthesis converts light into chemical energy."


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same weights, no second 540 MB on disk when the file system allows it
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The original, a permuted copy, a trimmed copy (keep 90%) and one without tokenizer.json."""
    src = smollm2_folder()
    root = tmp_path_factory.mktemp("smollm2-vocab")
    permute_vocabulary(src, root / "permuted", seed=7)
    trim_vocabulary(src, root / "trimmed", keep=0.9, seed=7)
    bare = root / "no-tokenizer"
    bare.mkdir()
    _link_or_copy(src / "model.safetensors", bare / "model.safetensors")
    shutil.copy2(src / "config.json", bare / "config.json")
    return {"original": src, "permuted": root / "permuted", "trimmed": root / "trimmed", "no-tokenizer": bare}


@pytest.fixture(scope="session")
def fingerprints(folders) -> dict[str, Fingerprint]:
    return {name: fingerprint_model(folder, CPU) for name, folder in folders.items()}


def _ids_only(fp: Fingerprint) -> Fingerprint:
    """The fingerprint as the id basis alone sees it (what lineage compared before token anchors)."""
    start = fp.id_anchor_start
    sketches = {k: v[:, start:, start:] for k, v in fp.sketches.items()}
    return dataclasses.replace(fp, anchors=fp.anchors[start:], anchor_tokens=(), anchor_basis="ids", sketches=sketches)


def _logits(folder: Path, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def _encode(folder: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


def _vocab(folder: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab(with_added_tokens=True)


def test_permuted_tokenizer_and_model_compute_the_same_function(folders):
    pytest.importorskip("transformers")
    src, dst = folders["original"], folders["permuted"]
    old, new = _vocab(src), _vocab(dst)
    perm = {old[t]: new[t] for t in old}  # old id -> new id
    assert sorted(perm) == sorted(perm.values()) and sum(a != b for a, b in perm.items()) > 0.99 * len(perm)
    ids = _encode(src, TEXT)
    assert _encode(dst, TEXT) == [perm[i] for i in ids]
    a, b = _logits(src, ids), _logits(dst, [perm[i] for i in ids])
    order = torch.tensor([perm[i] for i in range(a.shape[1])])
    torch.testing.assert_close(b[:, order], a, rtol=1e-4, atol=1e-4)


def test_trimmed_model_keeps_its_function_on_the_tokens_it_keeps(folders):
    pytest.importorskip("transformers")
    src, dst = folders["original"], folders["trimmed"]
    old, new = _vocab(src), _vocab(dst)
    assert 0.88 * len(old) < len(new) < 0.92 * len(old)
    ids_new = _encode(dst, TEXT)  # the trimmed tokenizer still encodes the text, with the tokens it has
    back = {i: old[t] for t, i in new.items()}  # new id -> old id
    a, b = _logits(src, [back[i] for i in ids_new]), _logits(dst, ids_new)
    kept = torch.tensor([back[i] for i in range(b.shape[1])])
    torch.testing.assert_close(b, a[:, kept], rtol=1e-4, atol=1e-4)


def test_vocabulary_permutation_leaves_the_fingerprint_on_its_parent(fingerprints):
    original, permuted = fingerprints["original"], fingerprints["permuted"]
    assert original.anchor_basis == permuted.anchor_basis == "tokens"
    assert original.anchor_tokens == permuted.anchor_tokens
    assert not np.array_equal(original.anchors, permuted.anchors)  # the same tokens at other ids
    assert comparison_basis(original, permuted) == "tokens" and comparison_note(original, permuted) is None
    assert sketch_distance_matrix([permuted], [original])[0, 0] < 1e-3
    # By ids, as lineage compared before, the permuted copy looks unrelated.
    assert sketch_distance_matrix([_ids_only(permuted)], [_ids_only(original)])[0, 0] > 0.5


def test_trimmed_vocabulary_stays_close(fingerprints):
    original, trimmed = fingerprints["original"], fingerprints["trimmed"]
    shared = set(original.anchor_tokens) & set(trimmed.anchor_tokens)
    assert len(shared) >= 0.75 * len(original.anchor_tokens)  # most anchors survive a 10% trim
    assert shared != set(original.anchor_tokens)  # the trim did remove some: the test is not vacuous
    assert sketch_distance_matrix([trimmed], [original])[0, 0] < 1e-2


def test_no_tokenizer_falls_back_to_ids_and_says_so(fingerprints, tmp_path):
    from lineage.fingerprint import load_fingerprint, save_fingerprint

    original, bare = fingerprints["original"], fingerprints["no-tokenizer"]
    back = load_fingerprint(save_fingerprint(bare, tmp_path / "bare.fingerprint.safetensors"))
    assert back.anchor_basis == "ids" and back.anchor_tokens == ()
    assert comparison_basis(bare, original) == "ids"
    assert "no tokenizer for 'no-tokenizer'" in comparison_note(bare, original)
    # The same weights with the same ids: by ids the mixed pair still lines up.
    assert sketch_distance_matrix([bare], [original])[0, 0] < 1e-3


def test_real_anchors_skip_characters_and_special_tokens(folders, fingerprints):
    from lineage.io import open_checkpoint

    fp = fingerprints["original"]
    assert len(fp.anchor_tokens) == CPU.anchors
    with open_checkpoint(folders["original"]) as reader:
        vocab = reader.vocabulary
    for token, i in zip(fp.anchor_tokens, fp.anchors):
        assert vocab.tokens[i] == token and i not in vocab.special and len(token) > 1
