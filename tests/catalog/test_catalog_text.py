"""Offline text mixtures and family tokenizers: deterministic, and different where families differ."""

from __future__ import annotations

import pytest

from lineage.catalog.bpe import SP_SPECIALS, train_tokenizer
from lineage.catalog.text import N_BUCKETS, _source_documents, api_headers, format_instruction, mixture_text


def test_lib_buckets_partition_the_library() -> None:
    every = {doc_id for doc_id, _ in _source_documents("lib:" + ",".join(map(str, range(N_BUCKETS))))}
    halves = [{d for d, _ in _source_documents(spec)} for spec in ("lib:0,1,2,3", "lib:4,5,6,7")]
    assert halves[0] and halves[1] and not halves[0] & halves[1] and halves[0] | halves[1] == every
    assert not any("/test/" in f"/{d}" for d in every)


def test_mixtures_are_deterministic_and_seed_dependent() -> None:
    a = mixture_text(("pkg:email", "pkg:json"), seed=1, max_chars=20_000)
    assert a == mixture_text(("pkg:email", "pkg:json"), seed=1, max_chars=20_000)
    assert a != mixture_text(("pkg:email", "pkg:json"), seed=2, max_chars=20_000)
    assert len(a) == 20_000


def test_instruction_examples_pair_an_api_with_its_docstring() -> None:
    headers = api_headers(3, seed=0)
    assert len(headers) == 3 and headers == api_headers(3, seed=0)
    example = format_instruction("def f(x)", "Return x.")
    assert example.startswith("<|user|>\nWhat does `def f(x)` do?\n<|assistant|>\nReturn x.")


@pytest.mark.parametrize("kind", ["byte_level", "metaspace"])
def test_tokenizer_training_is_deterministic(kind: str) -> None:
    text = mixture_text(("pkg:json",), seed=0, max_chars=30_000)
    a = train_tokenizer(text, vocab_size=400, kind=kind)
    b = train_tokenizer(text, vocab_size=400, kind=kind)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) == 400
    if kind == "metaspace":
        assert a.bos_token == SP_SPECIALS[0] and "<0xFF>" in a.get_vocab()  # SentencePiece-style byte fallback
    assert a.decode(a("def f(x):\n    return x")["input_ids"]) == "def f(x):\n    return x"
