"""Verdicts on real weights: SmolLM2-135M-Instruct, its real derivatives, and real-width models it did not make.

Tiny random models hide what real weights show (a real vocabulary of 49,152 tokens, 30 layers, trained
embeddings), so the verdict rules are checked here on the real model the test suite installs:

* derivatives: a short real fine-tune; the fine-tune disguised at once by every function-preserving map
  lineage knows (FFN permutation, MergeLock per-head maps, norm-gain rescaling, a residual rotation) and then
  quantised to int4; the same with every FFN unit's sign redrawn as well (which blinds every exact group:
  `derived` on the unit matching test's empirical null, `lineage.compare.matching`); the base with a quarter
  of its layers removed (depth pruning); the base up-scaled to 40
  layers the SOLAR way (layers 0-19, then 10-29): all `derived`, from SmolLM2, with tiny p-values;
* SmolLM2's 30 layers under a random embedding (a transplant that keeps no row): `derived`, through the weight
  test's seeded residual group and its frame-unit group; the same behind a rotated residual stream (MergeLock
  maps and an FFN permutation too), then tuned a few steps: `derived` through the frame-unit group alone;
* innocents: models of SmolLM2's very width, heads and tokenizer that never saw its weights: one randomly
  initialised at 32 layers and briefly trained on the same text (the issue's reproduction: the old test
  called it derived at p = 1.3e-4), one randomly initialised at its own depth of 30: never `derived`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.compare.similarity import sketch_distance_matrix
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.obtain import obtain_fingerprint
from tests.real import independent_folders, redraw_embedding, smollm2_folder
from tests.real import save_folder as _save

pytestmark = pytest.mark.slow
DERIVATIVES = ("finetune", "finetune-disguised-int4", "depth-pruned", "depth-upscaled")
INNOCENTS = ("scratch-32-layers", "random-30-layers")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = smollm2_folder()
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lineage.catalog.disguise import disguise_all, mergelock, norm_rescale, permute_ffn, rescale_ffn
    from lineage.catalog.operations import quantize, select_layers
    from lineage.catalog.rotate import rotate_residual
    from lineage.catalog.text import mixture_text
    from lineage.catalog.train import TrainConfig, train_lm

    root = tmp_path_factory.mktemp("real")
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = torch.tensor(tokenizer(mixture_text(("pkg:email",), seed=0, max_chars=60_000))["input_ids"])
    out = {"base": base}

    def load():  # noqa: ANN202
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)

    model = load()
    torch.manual_seed(0)
    train_lm(model, ids, TrainConfig(steps=4, lr=2e-5, batch_size=2, seq_len=64, seed=0, warmup=0))
    out["finetune"] = _save(model, tokenizer, root / "smollm2-ft")
    signed = AutoModelForCausalLM.from_pretrained(out["finetune"], dtype=torch.float32)
    gen = torch.Generator().manual_seed(11)
    signed = disguise_all(rescale_ffn(signed, gen, signed=True), gen)
    out["finetune-signed-int4"] = _save(quantize(signed, bits=4), tokenizer, root / "smollm2-ft-signed-int4")
    gen = torch.Generator().manual_seed(7)
    disguised = rotate_residual(norm_rescale(mergelock(permute_ffn(model, gen), gen), gen), gen)
    out["finetune-disguised-int4"] = _save(quantize(disguised, bits=4), tokenizer, root / "smollm2-ft-disguised-int4")
    out["depth-pruned"] = _save(select_layers(load(), [*range(12), *range(20, 30)]), tokenizer, root / "pruned")
    out["depth-upscaled"] = _save(select_layers(load(), [*range(20), *range(10, 30)]), tokenizer, root / "upscaled")

    replaced = load()  # every layer SmolLM2's, the (tied) embedding redrawn: a transplant that keeps no row
    redraw_embedding(replaced)
    out["embedding-replaced"] = _save(replaced, tokenizer, root / "embedding-replaced")
    gen = torch.Generator().manual_seed(13)  # the same layers behind a rotated residual stream, then tuned
    hidden = rotate_residual(mergelock(permute_ffn(replaced, gen), gen), gen)
    train_lm(hidden, ids, TrainConfig(steps=4, lr=2e-5, batch_size=2, seq_len=64, seed=1, warmup=0))
    out["embedding-replaced-rotated"] = _save(hidden, tokenizer, root / "embedding-replaced-rotated")

    out.update(independent_folders(base, tokenizer, ids, root))
    return out


@pytest.fixture(scope="module")
def fps(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from lineage.fingerprint.cache import FingerprintCache

    cache = FingerprintCache(tmp_path_factory.mktemp("real-cache"))
    return {k: obtain_fingerprint(p, cache=cache, name=k)[0] for k, p in models.items()}


@pytest.fixture(scope="module")
def verdicts(fps: dict) -> dict:
    clf = FamilyClassifier().fit([fps["base"]], ["smollm2"], ["SmolLM2-135M-Instruct"])
    names = [*DERIVATIVES, *INNOCENTS, "embedding-replaced", "embedding-replaced-rotated", "finetune-signed-int4"]
    return dict(zip(names, clf.predict([fps[n] for n in names])))


def test_anchors_are_chosen_by_token_string_on_the_real_model(fps):
    assert fps["base"].anchor_basis == "tokens"
    assert fps["scratch-32-layers"].anchor_basis == "tokens"


@pytest.mark.parametrize("name", DERIVATIVES)
def test_real_derivatives_are_derived(verdicts, name):
    v = verdicts[name]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.log10_p < -20, v.rule


def test_the_disguise_is_seen_through_by_the_unit_test_and_only_by_it(verdicts):
    weight = verdicts["finetune-disguised-int4"].evidence["weight"]
    p = {g["group"]: g["log10_p"] for g in weight["groups"]}
    assert weight["group"] in ("ffn units", "frame units") and p["ffn units"] < -20 and p["frame units"] < -20, p
    residual = [g for g in weight["groups"] if g["group"] in ("embedding", "attention", "ffn", "seeded residual")]
    assert residual and all(g["log10_p"] > -3 for g in residual)  # the rotation redrew every coordinate


def test_surgery_lines_up_the_layers_it_kept(verdicts):
    pruned = next(g for g in verdicts["depth-pruned"].evidence["weight"]["groups"] if g["group"] == "attention")
    assert [layer["reference_layer"] for layer in pruned["layers"]] == [*range(12), *range(20, 30)]
    upscaled = next(g for g in verdicts["depth-upscaled"].evidence["weight"]["groups"] if g["group"] == "attention")
    assert [layer["reference_layer"] for layer in upscaled["layers"]] == [*range(20), *range(10, 30)]


@pytest.mark.parametrize("name", INNOCENTS)
def test_real_width_models_that_never_saw_its_weights_are_not_derived(verdicts, name):
    v = verdicts[name]
    assert v.verdict != "derived" and v.derived_from is None, v.rule
    assert v.p_value > 0.01, v.rule


def test_the_disguised_fine_tune_is_the_base_in_function(fps):
    assert sketch_distance_matrix([fps["finetune-disguised-int4"]], [fps["base"]])[0, 0] < 0.05


def test_a_replaced_embedding_hides_not_the_layers_it_feeds(verdicts):
    # Every layer is SmolLM2's bit for bit under a random embedding: the anchor-based groups start from the
    # suspect's own embedding rows and see nothing; the seeded residual group reads the layers on seeded
    # inputs, and the frame-unit group on each model's own gate rows, whatever embedding sits in front of them.
    v = verdicts["embedding-replaced"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    groups = {g["group"]: g for g in v.evidence["weight"]["groups"]}
    assert groups["seeded residual"]["log10_p"] < -20 and groups["frame units"]["log10_p"] < -20, v.rule
    assert [layer["reference_layer"] for layer in groups["seeded residual"]["layers"]] == list(range(30))
    assert all(groups[g]["log10_p"] > -3 for g in ("ffn units", "value units")), v.rule  # read on the anchors


def test_a_replaced_embedding_behind_a_rotation_then_tuned_is_derived_through_its_weight_frame(verdicts):
    # The rotation redraws every residual coordinate (the seeded group's too), the new embedding every anchor:
    # only the units profiled on each model's own gate rows still line up.
    v = verdicts["embedding-replaced-rotated"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    groups = {g["group"]: g for g in v.evidence["weight"]["groups"]}
    assert v.evidence["weight"]["group"] == "frame units" and v.log10_p < -20, v.rule
    assert all(g["log10_p"] > -3 for name, g in groups.items() if name != "frame units"), v.rule
    assert [layer["reference_layer"] for layer in groups["frame units"]["layers"]] == list(range(30))


def test_every_disguise_with_sign_flips_is_derived_on_the_empirical_null(verdicts):
    # Rotation, MergeLock maps, norm rescaling, FFN permutation and every unit's sign redrawn, then int4: every
    # exact group is blind, and the two pairings of the FFN units (by gate, by |up + down|) still agree.
    v = verdicts["finetune-signed-int4"]
    assert (v.verdict, v.derived_from) == ("derived", "SmolLM2-135M-Instruct"), v.rule
    assert v.rule.startswith("derived (empirical null)") and v.log10_p > -3, v.rule
    assert v.evidence["matching"]["share"] > 0.5, v.rule
