"""The unit matching test on an FFN wider than 2,048 units (`lineage.probe.identity.profiled_units`).

A fingerprint keeps 1,024 units a layer. Were they a seeded sample of positions, a derivative whose units were
permuted would keep other units than its reference, and agree on at most `1024 / 2304` (44%) of them here:
below the rule's 50%. Kept by how much their gates respond to the anchors, they are the same units on both
sides, whatever the disguise: the fully disguised copy is derived, alone and int4, and a twin trained on the
same tokens and a student distilled from the base are still not.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lineage.compare.identity import weight_test
from lineage.compare.matching import unit_matching
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.probe.identity import UNIT_SAMPLE, profiled_units

pytest.importorskip("transformers")
from lineage.catalog import disguise, operations  # noqa: E402
from lineage.catalog.architectures import Shape, make_model  # noqa: E402
from lineage.catalog.train import TrainConfig, distill_lm, train_lm  # noqa: E402

CPU = FingerprintOptions(device="cpu")
LAYERS, WIDE = 2, 2304  # an FFN wider than twice the units kept
STEPS = TrainConfig(steps=20, lr=3e-3, batch_size=4, seq_len=32, seed=0, warmup=2)


def _model(seed: int) -> torch.nn.Module:
    shape = Shape("llama", hidden=32, layers=LAYERS, heads=4, kv_heads=2, intermediate=WIDE, vocab=512, tied=True)
    return make_model(shape, bos=0, eos=1, pad=2, seed=seed)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("wide-matching")
    torch.manual_seed(0)
    ids = (torch.arange(6000) * 37 % 509 + torch.randint(0, 3, (6000,))).long()
    base, twin, student = _model(0), _model(5), _model(7)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this narrow train fastest on one thread
    try:
        train_lm(base, ids, STEPS)
        train_lm(twin, ids, STEPS)
        distill_lm(student, base, ids, STEPS)
    finally:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(3)
    disguised = disguise.disguise_all(disguise.rescale_ffn(copy.deepcopy(base), gen, signed=True), gen)
    models = {
        "base": base, "twin": twin, "student": student, "disguised": disguised,
        "disguised-int4": operations.quantize(copy.deepcopy(disguised), bits=4),
        "int4": operations.quantize(copy.deepcopy(base), bits=4),
    }  # fmt: skip
    out = {}
    for name, model in models.items():
        model.save_pretrained(root / name)
        out[name] = fingerprint_model(root / name, CPU)
    return out


def test_a_narrow_ffn_keeps_every_unit_and_a_wide_one_its_most_responsive_whatever_their_order() -> None:
    assert profiled_units(torch.rand(50), 64).tolist() == list(range(50))
    scores = torch.rand(3000, generator=torch.Generator().manual_seed(1))
    kept = profiled_units(scores, 1024)
    assert kept.tolist() == sorted(set(kept.tolist())) and len(kept) == 1024  # sorted, unique: the gather needs it
    left = torch.ones(3000, dtype=torch.bool)
    left[kept] = False
    assert scores[kept].min() > scores[left].max()
    perm = torch.randperm(3000, generator=torch.Generator().manual_seed(2))  # a permutation of the units
    assert sorted(perm[profiled_units(scores[perm], 1024)].tolist()) == kept.tolist()


@pytest.mark.parametrize("name", ["disguised", "disguised-int4"])
def test_every_disguise_with_sign_flips_of_a_wide_ffn_is_derived_by_matching(world, name: str) -> None:
    assert weight_test(world[name], world["base"]).log10_p > -3, "the exact groups were not blind: a weaker case"
    m = unit_matching(world[name], world["base"])
    assert m is not None and m.units == LAYERS * UNIT_SAMPLE
    # A disguise is a function-preserving map: the same units are kept, every one (int4 rounds a few away).
    assert m.share > (0.99 if name == "disguised" else 0.8) and m.derived, f"{name}: {m.rule()}"


@pytest.mark.parametrize("name", ["twin", "student"])
def test_a_twin_and_a_student_of_a_wide_ffn_are_not_matched(world, name: str) -> None:
    m = unit_matching(world[name], world["base"])
    assert m is not None and not m.derived, m.rule()
    assert m.share < 5 * m.chance + 0.05, f"{name}: {m.rule()}"


def test_the_exact_unit_group_still_derives_a_plain_copy_of_a_wide_ffn(world) -> None:
    test = weight_test(world["int4"], world["base"])
    units = next(g for g in test.groups if g.name == "ffn units")
    assert units.test.log10_p < -20, units.to_dict()
