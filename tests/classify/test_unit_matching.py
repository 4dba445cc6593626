"""The unit matching test (`lineage.compare.matching`): a deep tiny model disguised by every symmetry at once,
FFN units' signs flipped included, is derived from its base (and after int4), while a twin trained on the same
tokens and a student distilled from the base are not."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.compare.identity import weight_test
from lineage.compare.matching import EMPIRICAL_NULL, MIN_AGREEMENT, MIN_UNITS, Matching, chance_agreement, unit_matching
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

pytest.importorskip("transformers")
from lineage.catalog import disguise, operations  # noqa: E402
from lineage.catalog.architectures import Shape, make_model  # noqa: E402
from lineage.catalog.train import TrainConfig, distill_lm, train_lm  # noqa: E402

CPU = FingerprintOptions(device="cpu")
LAYERS = 16
STEPS = TrainConfig(steps=20, lr=3e-3, batch_size=4, seq_len=32, seed=0, warmup=2)


def _model(seed: int) -> torch.nn.Module:
    shape = Shape("llama", hidden=64, layers=LAYERS, heads=4, kv_heads=2, intermediate=96, vocab=512, tied=True)
    return make_model(shape, bos=0, eos=1, pad=2, seed=seed)


def _fingerprint(model: torch.nn.Module, folder: Path):
    model.save_pretrained(folder)
    return fingerprint_model(folder, CPU)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("matching")
    torch.manual_seed(0)
    ids = (torch.arange(6000) * 37 % 509 + torch.randint(0, 3, (6000,))).long()  # a stream with structure
    base, twin, student = _model(0), _model(5), _model(7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this narrow train fastest on one thread (several thrash a busy machine)
    try:
        train_lm(base, ids, STEPS)
        train_lm(twin, ids, STEPS)  # the same tokens, another initialisation
        distill_lm(student, base, ids, STEPS)  # the base's function, none of its weights
    finally:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(3)
    disguised = disguise.disguise_all(disguise.rescale_ffn(copy.deepcopy(base), gen, signed=True), gen)
    quantised = copy.deepcopy(disguised)
    operations.quantize(quantised, bits=4)
    models = {"base": base, "twin": twin, "student": student, "disguised": disguised, "disguised-int4": quantised}
    return {name: _fingerprint(m, root / name) for name, m in models.items()}


@pytest.mark.parametrize("name", ["disguised", "disguised-int4"])
def test_every_disguise_with_sign_flips_hides_from_the_exact_test_not_from_matching(world, name: str) -> None:
    exact = weight_test(world[name], world["base"])
    assert exact.log10_p > -3, f"{name}: the exact groups were not blind (p 1e{exact.log10_p:.1f}): a weaker case"
    m = unit_matching(world[name], world["base"])
    assert m is not None and m.units == LAYERS * 96
    assert m.share > 0.9 and m.derived, f"{name}: {m.rule()}"


@pytest.mark.parametrize("name", ["twin", "student"])
def test_a_same_data_twin_and_a_distilled_student_are_not_matched(world, name: str) -> None:
    m = unit_matching(world[name], world["base"])
    assert m is not None and not m.derived, m.rule()
    assert m.share < 5 * m.chance + 0.05, f"{name}: {m.rule()}"


def test_the_verdict_says_derived_on_an_empirical_null(world) -> None:
    refs = [world["base"], world["twin"]]
    clf = FamilyClassifier().fit(refs, ["a", "b"], ["base", "twin"])
    disguised, student = clf.predict([world["disguised-int4"], world["student"]])
    assert disguised.verdict == "derived" and disguised.derived_from == "base"
    assert disguised.rule.startswith(f"derived ({EMPIRICAL_NULL})"), disguised.rule
    out = disguised.to_dict()
    assert out["evidence"]["matching"]["null"] == EMPIRICAL_NULL and out["evidence"]["matching"]["reference"] == "base"
    assert out["threshold"]["matching"]["null"] == EMPIRICAL_NULL
    assert student.verdict != "derived", student.rule


def test_chance_is_raised_where_both_pairings_crowd_onto_the_same_reference_units() -> None:
    spread = np.arange(64)
    assert chance_agreement(spread, np.roll(spread, 1), 64) == 1 / 64  # no crowd: 1/f
    hub = np.zeros(64, dtype=np.int64)
    hub[::2] = np.arange(1, 33)  # half of each pairing on reference unit 0, the rest one unit each
    assert chance_agreement(hub, np.roll(hub, 1), 64) == pytest.approx(0.5 * 0.5 + 32 * (1 / 64) ** 2)


def test_the_rule_needs_the_share_the_score_and_the_units_each() -> None:
    # A weak agreement over very many units has a tiny tail on its own: the share rule must still refuse it.
    many, tail = 1_000_000, -10_000.0
    assert not Matching(many, int(many * (MIN_AGREEMENT - 0.1)), 0.001, tail).derived
    assert Matching(many, int(many * MIN_AGREEMENT), 0.001, tail).derived
    assert not Matching(many, many, 0.001, -10.0).derived  # every unit agrees, but the score is not far enough
    assert not Matching(MIN_UNITS - 1, MIN_UNITS - 1, 0.001, tail).derived  # too few units to say anything
