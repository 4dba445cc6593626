"""The weight test across widths: residual coordinates of a width-pruned model paired with its parent's.

A 24-layer model of hidden 256 is pruned the Minitron way (`tests.widths`): residual width -25% (192), FFN
-33% (344 units), kept by importance and sorted by it, then moved by a fine-tune's noise; once more with a
third of its layers and a key-value head of four (with its query heads) dropped as well. Both are derived
through the residual groups, not only the units (and the second through its paired value dimensions),
and the parent, as a wider suspect, is derived from the pruned model; an independent model of the narrower
width is not. The pairing itself is pinned blind to the signs: flipping stored coordinates of either side
leaves it unchanged (the fact the exact null rests on, `lineage.compare.widths`).
"""

from __future__ import annotations

import numpy as np
import pytest

from lineage.compare.identity import weight_test
from lineage.compare.widths import paired_coordinates
from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.checkpoints import tiny_llama_tensors, write_checkpoint
from tests.widths import WIDE, width_pruned

CPU = FingerprintOptions(device="cpu")
RESIDUAL = ("embedding", "attention", "ffn")
DEPTH_KEPT = [i for i in range(WIDE["num_hidden_layers"]) if i % 3 != 1]  # 16 of 24 layers


@pytest.fixture(scope="module")
def fps(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("widths")
    base = tiny_llama_tensors(0, config=WIDE)
    pruned, config = width_pruned(base, WIDE, 192, 344)
    both, both_config = width_pruned(base, WIDE, 192, 344, layers=DEPTH_KEPT, kv_heads=3)
    narrow = dict(WIDE, hidden_size=192, intermediate_size=344, num_key_value_heads=3, num_attention_heads=6)
    models = {
        "base": (base, WIDE),
        "pruned": (tiny_llama_tensors(5, parent=pruned, noise=0.01), config),
        "pruned-shallower": (tiny_llama_tensors(6, parent=both, noise=0.01), both_config),
        "independent-narrow": (tiny_llama_tensors(7, config=narrow), narrow),
    }
    return {name: fingerprint_model(write_checkpoint(root / name, t, c), CPU) for name, (t, c) in models.items()}


def _groups(result) -> dict:  # noqa: ANN001 - a WeightTest
    return {g.name: g for g in result.groups}


def _stored(fp, sign: np.ndarray) -> tuple:  # noqa: ANN001 - a Fingerprint
    """`(embed, embed-free layers)` of `paired_coordinates` with `fp`'s stored coordinates multiplied by `sign`."""
    layers = sorted(int(k.split(".")[1]) for k in fp.identity if k.endswith(".resid_vo"))
    writes = [tuple(fp.identity[f"layers.{i}.{k}"].astype(np.float64) * sign for k in ("resid_vo", "resid_ffn"))
              for i in layers]  # fmt: skip
    return fp.identity["embed"].astype(np.float64) * sign, writes


def test_the_pairing_is_blind_to_every_sign_flip(fps):
    # Flipping stored coordinates of either model multiplies their columns by -1 everywhere: the pairing, made
    # from |cos| alone, must not move (conditional on it, each term's sign is still a fair coin).
    a, b = fps["pruned"], fps["base"]
    rng = np.random.default_rng(0)
    ones_a, ones_b = np.ones(a.identity["embed"].shape[1]), np.ones(b.identity["embed"].shape[1])
    flip_a, flip_b = rng.choice([-1.0, 1.0], len(ones_a)), rng.choice([-1.0, 1.0], len(ones_b))
    (ea, la), (eb, lb) = _stored(a, ones_a), _stored(b, ones_b)
    (fa, ma), (fb, mb) = _stored(a, flip_a), _stored(b, flip_b)
    plain, flipped = paired_coordinates(ea, eb, la, lb), paired_coordinates(fa, fb, ma, mb)
    assert np.array_equal(plain[0], flipped[0]) and np.array_equal(plain[1], flipped[1])
    assert len(set(plain[1])) == len(plain[1]) == len(ones_a)  # one to one: no coordinate in two terms


def test_a_width_pruned_copy_is_derived_through_the_residual_groups(fps):
    result = weight_test(fps["pruned"], fps["base"])
    groups = _groups(result)
    assert "seeded residual" not in groups  # its inputs are seeded by the width: not images of each other
    for name in RESIDUAL:
        assert groups[name].test.log10_p < -6, result.to_dict()
    assert [layer[:2] for layer in groups["attention"].layers] == [(i, i) for i in range(24)]
    clf = FamilyClassifier().fit([fps["base"]], ["tiny"], ["base"])
    [v] = clf.predict([fps["pruned"]])
    assert (v.verdict, v.derived_from) == ("derived", "base"), v.rule


def test_width_depth_and_heads_pruned_at_once_is_derived_and_its_layers_line_up(fps):
    result = weight_test(fps["pruned-shallower"], fps["base"])
    groups = _groups(result)
    for name in (*RESIDUAL, "value units"):  # value dimensions of 3 key-value heads paired with those of 4
        assert groups[name].test.log10_p < -6, result.to_dict()
    assert [layer[:2] for layer in groups["ffn"].layers] == list(enumerate(DEPTH_KEPT))
    assert [layer[:2] for layer in groups["value units"].layers] == list(enumerate(DEPTH_KEPT))


def test_the_wider_parent_is_derived_from_the_pruned_model(fps):
    groups = _groups(weight_test(fps["base"], fps["pruned"]))
    assert all(groups[name].test.log10_p < -6 for name in RESIDUAL)


def test_an_independent_model_of_the_narrower_width_is_not_derived(fps):
    result = weight_test(fps["independent-narrow"], fps["base"])
    assert result.p_value > 0.01, result.to_dict()
    groups = _groups(result)
    assert all(groups[name].test.log10_p > -2 and groups[name].test.signs == 128 for name in RESIDUAL)
    assert groups["value units"].test.log10_p > -2 and groups["value units"].test.signs == 24 * 3 * 32
