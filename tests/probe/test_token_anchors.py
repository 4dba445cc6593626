"""Anchors chosen by token string: selection rules, the file format, and comparison on shared strings.

The unit tests run on synthetic vocabularies; the end-to-end ones on a tiny Llama with a BPE tokenizer
trained here (`lineage.catalog.bpe`), permuted and trimmed by `lineage.catalog.vocab`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lineage.compare.similarity import (
    FAMILY_OVERLAP_POWER,
    comparison_basis,
    comparison_note,
    sketch_distance_matrix,
    sketch_similarity_matrix,
    vocabulary_overlap,
)
from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint, load_fingerprint, save_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io.vocab import Vocabulary
from lineage.probe.anchors import (
    Anchors,
    anchor_ids,
    choose_anchors,
    is_conventional,
    token_candidates,
    token_rank,
)

CPU = FingerprintOptions(device="cpu")


def _words(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out: dict[str, None] = {}
    while len(out) < n:
        out[" " + "".join(rng.choice(letters, size=rng.integers(2, 9)))] = None
    return list(out)


def _vocab(words: list[str], *, specials: int = 4, order: np.ndarray | None = None) -> Vocabulary:
    """Specials, then the 256 single bytes, then `words` (in `order` when given, a permutation of ids)."""
    tokens = [f"<|s{i}|>" for i in range(specials)] + [chr(i) for i in range(256)] + words
    if order is not None:
        tokens = [tokens[i] for i in order]
        special = frozenset(int(np.flatnonzero(order == i)[0]) for i in range(specials))
    else:
        special = frozenset(range(specials))
    return Vocabulary(tuple(tokens), special)


# -- selection ---------------------------------------------------------------------------------------


def test_token_anchors_follow_strings_through_a_permutation():
    words = _words(3000, 0)
    size = 4 + 256 + len(words)
    order = np.random.default_rng(1).permutation(size)  # new id j holds old token order[j]
    a = choose_anchors(_vocab(words), size, 64, seed=0)
    b = choose_anchors(_vocab(words, order=order), size, 64, seed=0)
    assert a.basis == b.basis == "tokens" and len(a.tokens) == 64
    assert a.tokens == b.tokens and list(a.tokens) == sorted(a.tokens)
    old_ids, new_ids = a.ids[:64], b.ids[:64]
    np.testing.assert_array_equal(order[new_ids], old_ids)  # each string at its own id in each model
    # The id anchors follow: the old rule's ids, the same in both (they mean other tokens in b).
    np.testing.assert_array_equal(a.ids[64:], anchor_ids(size, 64, 0))
    np.testing.assert_array_equal(b.ids[64:], a.ids[64:])


def test_specials_characters_bytes_and_duplicates_are_never_anchors():
    words = _words(400, 2)
    tokens = ["<s>", "</s>", "a", " ", "<0x0A>", "\x00Ã", *words, words[0], words[1]]  # two duplicate strings
    vocab = Vocabulary(tuple(tokens), frozenset({0, 1}))
    got = choose_anchors(vocab, len(tokens), 300, seed=3)
    assert got.basis == "tokens"
    forbidden = {"<s>", "</s>", "a", " ", "<0x0A>", "\x00Ã", words[0], words[1]}
    assert not forbidden & set(got.tokens)
    assert len(got.tokens) == 300
    assert is_conventional("\x00Ã") and not is_conventional("\x00ÃĤ") and is_conventional("<0xFF>")


def test_untrained_rows_are_skipped_reading_few_extra_rows():
    words = _words(20000, 4)
    vocab = _vocab(words)
    untrained = {i for i in range(len(vocab)) if i % 7 == 0}  # reserved rows: an untrained share of 1/7
    asked: list[int] = []

    def norms(ids):
        asked.extend(ids)
        return np.array([0.01 if i in untrained else 1.0 + (i % 5) / 10 for i in ids])

    got = choose_anchors(vocab, len(vocab), 64, seed=0, row_norms=norms)
    assert len(got.tokens) == 64 and not untrained & set(got.ids[:64].tolist())
    assert len(asked) <= 64 + 64 // 4 + 16 + 64  # a second, small batch at most; never the vocabulary
    # Without the untrained rows the choice is the one a vocabulary without them would make.
    ranked = [i for _, i in token_candidates(vocab, len(vocab), 0) if i not in untrained][:64]
    assert sorted(got.ids[:64].tolist()) == sorted(ranked)


def test_extension_and_trimming_keep_most_anchors():
    more = _words(7500, 5)
    words = more[:6000]
    base = choose_anchors(_vocab(words), 10**6, 64, seed=0)
    extended = choose_anchors(_vocab(more), 10**6, 64, seed=0)  # 25% more tokens
    rng = np.random.default_rng(7)
    trimmed = choose_anchors(_vocab([w for w in words if rng.random() < 0.9]), 10**6, 64, seed=0)
    # A MinHash sample keeps about 1/1.25 and 0.9 of its strings; far above what chance would share.
    assert len(set(base.tokens) & set(extended.tokens)) >= 0.65 * 64
    assert len(set(base.tokens) & set(trimmed.tokens)) >= 0.75 * 64
    other_seed = choose_anchors(_vocab(words), 10**6, 64, seed=1)
    assert len(set(base.tokens) & set(other_seed.tokens)) < 0.2 * 64  # the seed picks the sample


def test_no_vocabulary_or_too_few_tokens_fall_back_to_ids():
    assert choose_anchors(None, 5000, 64, seed=0).basis == "ids"
    tiny = Vocabulary(("<s>", "a", "b", " ab", " cd"), frozenset({0}))
    got = choose_anchors(tiny, 5, 64, seed=0)
    assert got.basis == "ids" and got.tokens == ()
    np.testing.assert_array_equal(got.ids, anchor_ids(5, 64, 0))


def test_candidates_are_in_token_rank_order():
    vocab = _vocab(_words(500, 8))
    got = [s for s, _ in token_candidates(vocab, len(vocab), 11)]
    assert got == sorted(got, key=lambda s: (token_rank(s, 11), s)) and len(got) == 500


def _string_fingerprint(name: str, anchors: Anchors) -> Fingerprint:
    """A fingerprint whose unembed sketch is one fixed function of the token strings (as for one model)."""
    keys = np.array([int.from_bytes(token_rank(t, 99), "little") % 1000 for t in anchors.tokens], dtype=np.float64)
    n = len(anchors.ids)
    sketch = np.zeros((1, n, n), dtype=np.float32)
    t = len(keys)
    sketch[0, :t, :t] = np.sin(np.outer(keys, keys) / 997.0)
    return Fingerprint(
        name=name,
        tensorguard=dict.fromkeys(TENSORGUARD_FEATURES, 0.0),
        anchors=anchors.ids,
        sketches={"unembed": sketch},
        settings={"seed": 0},
        anchor_tokens=anchors.tokens,
        anchor_basis=anchors.basis,
    )


def test_family_level_is_scaled_by_the_vocabulary_overlap():
    words = _words(9000, 9)  # distinct strings (a string twice in one vocabulary is never an anchor)
    shared, own_a, own_b = words[:3000], words[3000:6000], words[6000:]
    a = _string_fingerprint("a", choose_anchors(_vocab(shared + own_a), 10**6, 64, seed=0))
    b = _string_fingerprint("b", choose_anchors(_vocab(shared + own_b), 10**6, 64, seed=0))
    c = _string_fingerprint("c", choose_anchors(_vocab(shared + own_a[:1500]), 10**6, 64, seed=0))  # a subset
    overlap = vocabulary_overlap(a, b)
    assert 0.2 < overlap < 0.5  # Jaccard: 3000 shared of 9000 in the union
    nested = vocabulary_overlap(a, c)
    assert 0.6 < nested < 0.9  # 4500 of a's 6000: a subset is not "all shared" (the union counts)
    assert vocabulary_overlap(c, a) == nested  # symmetric
    sim = sketch_similarity_matrix([a], [b, c], {"unembed": 1.0})[0]
    # Same geometry on the shared strings: only the containment factor (the share of the smaller vocabulary
    # the other holds: about half for a and b, all of c) keeps the similarity from 1.
    assert 0.3 < sim[0] ** (1 / FAMILY_OVERLAP_POWER) < 0.7
    assert sim[1] == pytest.approx(1.0, abs=1e-5)


def test_anchors_refuse_inconsistent_values():
    with pytest.raises(ValueError):
        Anchors(np.arange(3), ("b", "a"), "tokens")
    with pytest.raises(ValueError):
        Anchors(np.arange(3), ("a",), "ids")
    with pytest.raises(ValueError):
        Anchors(np.arange(3), (), "strings")


# -- a tiny model with a real tokenizer --------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama with a trained byte-level BPE tokenizer; a permuted, a trimmed and a bare copy."""
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from lineage.catalog.bpe import train_tokenizer
    from lineage.catalog.vocab import permute_vocabulary, trim_vocabulary
    from tests.checkpoints import tiny_hf_model

    text = "".join(p.read_text(encoding="utf-8") for p in sorted(Path(json.__file__).parent.glob("*.py")))
    tokenizer = train_tokenizer(text, vocab_size=500, kind="byte_level")
    assert len(tokenizer) <= 512  # the tiny model's embedding rows
    root = tmp_path_factory.mktemp("tokenized")
    tiny_hf_model("llama", tied=False, seed=0).save_pretrained(root / "original")
    tokenizer.save_pretrained(root / "original")
    permute_vocabulary(root / "original", root / "permuted", seed=3)
    trim_vocabulary(root / "original", root / "trimmed", keep=0.9, seed=3)
    (root / "bare").mkdir()
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(root / "original" / name, root / "bare" / name)
    return {name: root / name for name in ("original", "permuted", "trimmed", "bare")}


@pytest.fixture(scope="module")
def tokenized_fps(tokenized) -> dict:
    return {name: fingerprint_model(folder, CPU) for name, folder in tokenized.items()}


def test_tiny_permuted_and_trimmed_copies_stay_on_the_original(tokenized_fps):
    fps = tokenized_fps
    assert fps["original"].anchor_basis == "tokens" and len(fps["original"].anchor_tokens) == CPU.anchors
    d = sketch_distance_matrix([fps["permuted"], fps["trimmed"]], [fps["original"]])[:, 0]
    assert d[0] < 1e-3 and d[1] < 1e-2, d
    assert vocabulary_overlap(fps["permuted"], fps["original"]) == 1.0
    # A trimmed subset: the symmetric overlap counts the tokens it dropped (about its size ratio).
    assert 0.7 < vocabulary_overlap(fps["trimmed"], fps["original"]) < 1.0


def test_permuted_and_trimmed_folders_keep_their_special_ids_consistent(tokenized):
    from tokenizers import Tokenizer

    def named(folder: Path) -> dict[str, str]:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        out = {}
        for file in ("config.json", "generation_config.json"):
            doc = json.loads((folder / file).read_text()) if (folder / file).is_file() else {}
            for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
                if isinstance(doc.get(key), int):
                    out[f"{file}:{key}"] = tok.id_to_token(doc[key])
        return out

    original = named(tokenized["original"])
    assert original and all(original.values())
    assert named(tokenized["permuted"]) == original and named(tokenized["trimmed"]) == original
    trimmed = json.loads((tokenized["trimmed"] / "config.json").read_text())
    assert trimmed["vocab_size"] < json.loads((tokenized["original"] / "config.json").read_text())["vocab_size"]


def test_token_fingerprint_file_is_byte_identical_and_round_trips(tokenized, tokenized_fps, tmp_path):
    a = save_fingerprint(fingerprint_model(tokenized["permuted"], CPU), tmp_path / "a.fingerprint.safetensors")
    b = save_fingerprint(tokenized_fps["permuted"], tmp_path / "b.fingerprint.safetensors")
    assert a.read_bytes() == b.read_bytes()
    back = load_fingerprint(a)
    assert back.anchor_basis == "tokens" and back.anchor_tokens == tokenized_fps["permuted"].anchor_tokens
    np.testing.assert_array_equal(back.anchors, tokenized_fps["permuted"].anchors)


def test_without_tokenizer_the_pair_compares_by_ids_and_says_so(tokenized_fps):
    original, bare, permuted = tokenized_fps["original"], tokenized_fps["bare"], tokenized_fps["permuted"]
    assert bare.anchor_basis == "ids" and bare.anchor_tokens == ()
    assert comparison_basis(original, permuted) == "tokens" and comparison_note(original, permuted) is None
    assert comparison_basis(bare, original) == comparison_basis(bare, bare) == "ids"
    assert "no tokenizer for 'bare'" in comparison_note(original, bare)
    assert vocabulary_overlap(bare, original) is None
    d = sketch_distance_matrix([bare], [original, permuted])[0]
    assert d[0] < 1e-3  # same ids, same rows: the id anchors line up
    assert d[1] > 0.5  # a permuted vocabulary cannot be seen through without a tokenizer


def test_batched_comparison_of_mixed_bases_equals_pairwise(tokenized_fps):
    fps = list(tokenized_fps.values())
    batched = sketch_distance_matrix(fps, fps)
    pairwise = np.array([[sketch_distance_matrix([x], [y])[0, 0] for y in fps] for x in fps])
    np.testing.assert_allclose(batched, pairwise, atol=1e-6)  # float32 sketches: chunking moves the last bits
    np.testing.assert_allclose(batched, batched.T, atol=1e-6)


def test_tokenizer_change_is_a_new_cache_key(tokenized, tmp_path):
    from lineage.fingerprint.pipeline import cache_key

    folder = tmp_path / "m"
    shutil.copytree(tokenized["original"], folder)
    before = cache_key(folder, CPU)
    (folder / "tokenizer.json").unlink()
    assert cache_key(folder, CPU) != before


def test_vocabulary_edits_refuse_bad_input(tokenized, tmp_path):
    from lineage.catalog.vocab import permute_vocabulary, trim_vocabulary
    from lineage.errors import CatalogError

    with pytest.raises(CatalogError, match="no tokenizer.json"):
        permute_vocabulary(tokenized["bare"], tmp_path / "x", seed=0)
    with pytest.raises(ValueError, match="keep"):
        trim_vocabulary(tokenized["original"], tmp_path / "y", keep=0.0, seed=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(CatalogError, match="not empty"):
        permute_vocabulary(tokenized["original"], tmp_path / "full", seed=0)
