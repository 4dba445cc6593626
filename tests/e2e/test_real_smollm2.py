"""Verdicts on real weights: SmolLM2-135M-Instruct, its real fine-tune and disguise, and a model of its tokenizer.

Tiny random models hide what real weights show (a real vocabulary of 49,152 tokens, 30 layers, trained
embeddings), so the verdict rules are checked here on the real model the test suite installs:

* a short real fine-tune (a few optimizer steps on real text through its real tokenizer) is `derived`;
* the same fine-tune disguised at once by every function-preserving map lineage knows (FFN permutation,
  MergeLock per-head maps, norm folding and a residual rotation) is still `derived` (the weight test's raw
  half is blind to it, its anchored half and the function test are not);
* the disguised base alone sits within 1e-3 of the base;
* a small model trained from scratch with SmolLM2's very tokenizer, on the same text, is not `derived`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.compare.similarity import sketch_distance_matrix
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.null import BUILTIN_NULL
from lineage.fingerprint.cache import obtain_fingerprint
from tests.real import smollm2_folder

pytestmark = pytest.mark.slow

#: A disguise that redraws every basis (rotation, per-head maps, neuron permutation) leaves the weight test
#: blind; only the function test can see it, and against one reference its null is the shipped sample.
needs_builtin_null = pytest.mark.xfail(
    not BUILTIN_NULL.is_file(),
    reason=f"no built-in function null ({BUILTIN_NULL.name}, made by `lineage evaluate null`): the function "
    "test has no null sample against a single reference",
    strict=True,
)


def _save(model, tokenizer, folder: Path) -> Path:  # noqa: ANN001 - transformers objects
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = smollm2_folder()
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lineage.catalog.disguise import mergelock, permute_ffn
    from lineage.catalog.rotate import rotate_residual
    from lineage.catalog.text import mixture_text
    from lineage.catalog.train import TrainConfig, train_lm

    root = tmp_path_factory.mktemp("real")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    out = {"base": base}

    def disguise(model):  # noqa: ANN001, ANN202
        gen = torch.Generator().manual_seed(7)
        return rotate_residual(mergelock(permute_ffn(model, gen), gen), gen)

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    out["disguised"] = _save(disguise(model), tokenizer, root / "smollm2-disguised")

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    train_lm(model, ids, TrainConfig(steps=4, lr=2e-5, batch_size=2, seq_len=64, seed=0, warmup=0))
    out["finetune"] = _save(model, tokenizer, root / "smollm2-ft")
    out["finetune-disguised"] = _save(disguise(model), tokenizer, root / "smollm2-ft-disguised")

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True,
    )  # fmt: skip
    scratch = LlamaForCausalLM(config)
    train_lm(scratch, ids, TrainConfig(steps=40, lr=3e-3, batch_size=4, seq_len=64, seed=1))
    out["scratch"] = _save(scratch, tokenizer, root / "scratch-smollm2-tokenizer")
    return out


@pytest.fixture(scope="module")
def fps(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from lineage.fingerprint.cache import FingerprintCache

    cache = FingerprintCache(tmp_path_factory.mktemp("real-cache"))
    return {k: obtain_fingerprint(p, cache=cache, name=k)[0] for k, p in models.items()}


@pytest.fixture(scope="module")
def verdicts(fps: dict) -> dict:
    clf = FamilyClassifier().fit([fps["base"]], ["smollm2"], ["SmolLM2-135M-Instruct"])
    names = ["finetune", "finetune-disguised", "disguised", "scratch"]
    return dict(zip(names, clf.predict([fps[n] for n in names])))


def test_anchors_are_chosen_by_token_string_on_the_real_model(fps):
    assert fps["base"].anchor_basis == "tokens"
    assert fps["scratch"].anchor_basis == "tokens"


def test_the_real_fine_tune_is_derived(verdicts):
    v = verdicts["finetune"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.p_value < 1e-6
    assert v.evidence["weight"]["p_value"] < 1e-6  # its weights keep the base's basis


@needs_builtin_null
def test_the_fully_disguised_fine_tune_is_still_derived(verdicts):
    v = verdicts["finetune-disguised"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.p_value < 1e-3


def test_the_disguised_base_is_the_base_in_function(fps):
    assert sketch_distance_matrix([fps["disguised"]], [fps["base"]])[0, 0] < 1e-3


@needs_builtin_null
def test_the_disguised_base_is_derived(verdicts):
    assert verdicts["disguised"].verdict == "derived"


def test_a_model_trained_from_scratch_with_the_same_tokenizer_is_not_derived(verdicts):
    v = verdicts["scratch"]
    assert v.verdict != "derived", v.rule
    assert v.derived_from is None
    assert v.p_value > 0.01
