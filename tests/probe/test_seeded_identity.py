"""The weight test's seeded residual group: the layers speak for themselves, whatever embedding feeds them.

The group reads each block's write on seeded residual inputs that are zero at the read coordinates
(`lineage.probe.identity.seeded_split`). Its null rests on one fact of the pipeline, pinned here on a real
fingerprint: flipping read coordinates of a model (its embedding column and that coordinate in every matrix
reading or writing the residual stream: the same function) flips exactly those columns of the seeded
responses and changes nothing else, while a flipped support coordinate, where the inputs live, changes them
by more than a sign. Then the claim itself: a tiny model's layers under a random embedding are derived,
through this group, and a model of another seed is not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lineage.compare.identity import weight_test
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.probe.identity import seeded_inputs, seeded_split
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

CPU = FingerprintOptions(device="cpu")
WIDTH = TINY_LLAMA_CONFIG["hidden_size"]
READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
WRITERS = ("o_proj", "down_proj")


def _flipped(tensors: dict[str, torch.Tensor], coords: np.ndarray) -> dict[str, torch.Tensor]:
    """The same function with residual coordinates `coords` flipped (RMSNorm gains are per coordinate: kept)."""
    s = torch.ones(WIDTH)
    s[torch.from_numpy(coords)] = -1
    out = {}
    for name, w in tensors.items():
        if name == "model.embed_tokens.weight" or name.endswith(tuple(f"{r}.weight" for r in READERS)):
            w = w * s  # columns
        elif name.endswith(tuple(f"{r}.weight" for r in WRITERS)):
            w = w * s[:, None]  # rows
        out[name] = w
    return out


@pytest.fixture(scope="module")
def fps(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("seeded")
    base = tiny_llama_tensors(0)
    read, support = seeded_split(WIDTH, CPU.probe_seed)
    replaced = dict(base)  # every layer the base's, the (tied) embedding redrawn
    replaced["model.embed_tokens.weight"] = torch.randn(base["model.embed_tokens.weight"].shape,
                                                        generator=torch.Generator().manual_seed(9)) * 0.1  # fmt: skip
    models = {
        "base": base,
        "read-flipped": _flipped(base, read[::3]),
        "support-flipped": _flipped(base, support[:1]),
        "replaced-embedding": replaced,
        "other-seed": tiny_llama_tensors(1),
    }
    return {name: fingerprint_model(write_checkpoint(root / name, t), CPU) for name, t in models.items()}


def _seeded(fp) -> np.ndarray:  # noqa: ANN001 - a Fingerprint
    return np.concatenate([fp.identity[f"layers.{i}.{k}"] for i in range(2) for k in ("seeded_vo", "seeded_ffn")])


def test_seeded_inputs_are_zero_exactly_at_the_read_coordinates():
    read, support = seeded_split(WIDTH, 0)
    x = seeded_inputs(WIDTH, 0)
    assert len(read) + len(support) == WIDTH and not set(read) & set(support)
    assert np.all(x[:, read] == 0) and np.all(x[:, support] != 0)


def test_a_flip_of_read_coordinates_flips_exactly_their_seeded_responses(fps):
    read, _ = seeded_split(WIDTH, CPU.probe_seed)
    sign = np.where(np.isin(read, read[::3]), -1.0, 1.0)
    base, flipped = _seeded(fps["base"]).astype(np.float64), _seeded(fps["read-flipped"]).astype(np.float64)
    assert np.array_equal(flipped, base * sign)  # bit for bit: the inputs never see a read coordinate
    assert np.abs(base[:, sign < 0]).min() > 0  # and every flipped column carries a sign to flip


def test_a_flip_of_a_support_coordinate_changes_more_than_signs(fps):
    # The inputs live on the support: flipping one of its coordinates changes the inputs the layers meet, so
    # the responses change in size, not only in sign (why the read coordinates must carry no input).
    base, flipped = _seeded(fps["base"]).astype(np.float64), _seeded(fps["support-flipped"]).astype(np.float64)
    assert np.abs(np.abs(flipped) - np.abs(base)).max() > 0.05 * np.abs(base).max()


def test_layers_under_a_random_embedding_are_derived_through_the_seeded_group(fps):
    result = weight_test(fps["replaced-embedding"], fps["base"])
    groups = {g.name: g for g in result.groups}
    seeded = groups["seeded residual"]
    assert seeded.test.log10_p < -5 and result.log10_p < -5, result.to_dict()
    assert seeded.test.signs == len(seeded_split(WIDTH, CPU.probe_seed)[0]) and seeded.test.mean > 0.99
    assert [layer[:2] for layer in seeded.layers] == [(0, 0), (1, 1)]
    # The units on the weight frame see the layers too (no anchor enters either); the anchors alone see nothing.
    assert groups["frame units"].test.log10_p < -5
    others = [g for name, g in groups.items() if name not in ("seeded residual", "frame units")]
    assert others and all(g.test.log10_p > -2 for g in others)
    clf = FamilyClassifier().fit([fps["base"]], ["tiny"], ["base"])
    [v] = clf.predict([fps["replaced-embedding"]])
    assert (v.verdict, v.derived_from) == ("derived", "base"), v.rule


def test_a_model_of_another_seed_is_not_derived(fps):
    result = weight_test(fps["other-seed"], fps["base"])
    assert result.p_value > 0.01, result.to_dict()
    assert next(g for g in result.groups if g.name == "seeded residual").test.log10_p > -2
