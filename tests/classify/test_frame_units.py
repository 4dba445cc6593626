"""The frame-unit group (`lineage.probe.frame`, `lineage.compare.frames`): a model's layers behind a new embedding
*and* a rotated residual stream (MergeLock maps, a neuron permutation and rescaling on top) are derived, through
units profiled on each model's own weight frame, where every other group is blind; the null stays exact (a unit's
sign flip negates its own term and moves nothing the pairing reads); a twin trained on the same tokens is not
derived."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.compare.frames import pair_frames
from lineage.compare.identity import weight_test
from lineage.compare.matching import unit_matching
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

pytest.importorskip("transformers")
from lineage.catalog import disguise, rotate, transplant  # noqa: E402
from lineage.catalog.architectures import Shape, make_model  # noqa: E402
from lineage.catalog.train import TrainConfig, train_lm  # noqa: E402

CPU = FingerprintOptions(device="cpu")
LAYERS, UNITS = 8, 96
STEPS = TrainConfig(steps=20, lr=3e-3, batch_size=4, seq_len=32, seed=0, warmup=2)


def _model(seed: int) -> torch.nn.Module:
    shape = Shape("llama", hidden=64, layers=LAYERS, heads=4, kv_heads=2, intermediate=UNITS, vocab=512, tied=True)
    return make_model(shape, bos=0, eos=1, pad=2, seed=seed)


def _hidden(model: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """`model`'s layers behind a redrawn embedding, then every disguise but the units' signs, rotation included."""
    model = copy.deepcopy(model)
    transplant.redraw_embedding(model, gen)
    model = disguise.rescale_ffn(disguise.permute_ffn(disguise.mergelock(model, gen), gen), gen)
    return rotate.rotate_residual(model, gen)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root: Path = tmp_path_factory.mktemp("frame")
    torch.manual_seed(0)
    ids = (torch.arange(6000) * 37 % 509 + torch.randint(0, 3, (6000,))).long()
    base, twin = _model(0), _model(5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this narrow train fastest on one thread
    try:
        train_lm(base, ids, STEPS)
        train_lm(twin, ids, STEPS)  # the same tokens, another initialisation
    finally:
        torch.set_num_threads(threads)
    hidden = _hidden(base, torch.Generator().manual_seed(3))
    flipped = disguise.rescale_ffn(copy.deepcopy(hidden), torch.Generator().manual_seed(4), signed=True)
    models = {"base": base, "twin": twin, "hidden": hidden, "flipped": flipped}
    fps = {}
    for name, m in models.items():
        m.save_pretrained(root / name)
        fps[name] = fingerprint_model(root / name, CPU)
    signs = [torch.sign((a.mlp.up_proj.weight * b.mlp.up_proj.weight).sum(1)).detach().numpy()
             for a, b in zip(hidden.model.layers, flipped.model.layers)]  # fmt: skip
    return {"fps": fps, "signs": signs}


def _groups(result) -> dict[str, float]:  # noqa: ANN001 - a WeightTest
    return {g.name: g.test.log10_p for g in result.groups}


def test_layers_behind_a_new_embedding_and_a_rotation_are_derived_through_their_frame(world):
    result = weight_test(world["fps"]["hidden"], world["fps"]["base"])
    groups = _groups(result)
    assert groups["frame units"] < -30, groups
    assert all(p > -3 for name, p in groups.items() if name != "frame units"), f"a weaker case: {groups}"
    assert result.group == "frame units" and result.log10_p < -30


def test_a_unit_sign_flip_negates_its_own_frame_profiles_and_moves_nothing_the_pairing_reads(world):
    hidden, flipped = world["fps"]["hidden"].identity, world["fps"]["flipped"].identity
    assert np.array_equal(hidden["frame"], flipped["frame"])
    for i, signs in enumerate(world["signs"]):
        assert (signs < 0).any() and (signs > 0).any()
        assert np.array_equal(hidden[f"layers.{i}.frame_gate"], flipped[f"layers.{i}.frame_gate"])
        for kind in ("frame_up", "frame_down"):  # each unit's row: a positive rescaling times its own sign
            a, b = (x[f"layers.{i}.{kind}"].astype(np.float64) for x in (hidden, flipped))
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            np.testing.assert_allclose(cos, signs, atol=2e-3)
    # So the flips the null rests on leave the group as blind as a coin: this is the disguise it cannot see.
    assert _groups(weight_test(world["fps"]["flipped"], world["fps"]["base"]))["frame units"] > -3


def test_a_twin_on_the_same_tokens_is_not_derived_through_its_frame(world):
    result = weight_test(world["fps"]["twin"], world["fps"]["base"])
    assert _groups(result)["frame units"] > -3 and result.log10_p > -3, _groups(result)


def test_frame_directions_are_paired_whatever_their_order_and_through_a_fine_tune_s_noise(world):
    identity = world["fps"]["base"].identity
    gram = identity["frame"].astype(np.float64)
    gates = {i: identity[f"layers.{i}.frame_gate"].astype(np.float64) for i in range(LAYERS)}
    rng = np.random.default_rng(0)
    order = rng.permutation(len(gram))  # the other model's direction k is this one's order[k]
    noisy = {i: g[:, order] + 0.05 * np.abs(g).mean() * rng.normal(size=g.shape) for i, g in gates.items()}
    ca, cb = pair_frames(gram, gram[np.ix_(order, order)] + 0.02 * rng.normal(size=gram.shape), gates, noisy)
    assert np.array_equal(order[cb], ca)


def test_the_sign_flipped_copy_behind_a_new_embedding_is_derived_by_matching_on_the_frame(world):
    # Every exact group is blind to it (the units' signs are the thief's coins) and the anchor profiles start
    # from the new embedding: the two pairings of the units on the weight frame still agree.
    m = unit_matching(world["fps"]["flipped"], world["fps"]["base"])
    assert m is not None and m.profiles == "frame" and m.units == LAYERS * UNITS
    assert m.share > 0.9 and m.derived, m.rule()
    twin = unit_matching(world["fps"]["twin"], world["fps"]["base"])
    assert twin is not None and not twin.derived and twin.share < 0.2, twin.rule()
