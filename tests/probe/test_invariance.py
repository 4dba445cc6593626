"""Lineage's sketches and weight test survive every function-preserving disguise and still tell unrelated
models apart.

Each disguise of the catalog (neuron permutation, FFN unit rescaling, MergeLock per-head maps, norm-gain
rescaling, residual rotation with gains folded, and all of them at once) is applied to tiny models of the
five layouts; the disguised copy must sit at distance ~0 from its parent, while a same-shape model from
another seed sits far away. On the weight test, every group the disguise leaves invariant must give the
copy the z and p-value the parent gets against itself (the groups it blinds are the documented limits:
MergeLock redraws the value dimensions' basis, a rotation the residual coordinates), and the same-shape
model of another seed is not derived through any group.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lineage.compare.identity import GROUPS, weight_test
from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

pytest.importorskip("transformers")
from lineage.catalog import disguise, rotate  # noqa: E402
from tests.checkpoints import tiny_hf_model as tiny_model  # noqa: E402

CPU = FingerprintOptions(device="cpu")
DISGUISES = {
    "permute_ffn": disguise.permute_ffn,
    "mergelock": disguise.mergelock,
    "norm_rescale": disguise.norm_rescale,
    "rotate_residual": rotate.rotate_residual,
    "rescale_ffn": disguise.rescale_ffn,
    "all": disguise.disguise_all,  # the rotation skipped where it cannot preserve the function (Gemma 3)
}
RESIDUAL = ("embedding", "attention", "ffn", "seeded residual")
#: The weight test's groups each disguise leaves exactly as they were (`lineage.compare.identity`).
INVARIANT = {
    "permute_ffn": GROUPS,  # units matched by their gate profiles
    "rescale_ffn": GROUPS,  # a unit's cosines do not see a positive scale
    "norm_rescale": GROUPS,
    "mergelock": (*RESIDUAL, "ffn units"),  # an invertible map per head redraws the value dimensions
    "rotate_residual": ("ffn units", "value units"),  # profiles on anchor mixtures rotate with the model
    "all": ("ffn units",),
}
ARCHS = [("llama", True), ("qwen2", False), ("gemma3", True), ("phi3", False), ("mistral", False)]


def _fingerprint(model: torch.nn.Module, folder: Path):
    model.save_pretrained(folder)
    return fingerprint_model(folder, CPU)


@pytest.fixture(scope="module")
def parents(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inv")
    out = {}
    for arch, tied in ARCHS:
        parent = tiny_model(arch, tied=tied, seed=0)
        twin = tiny_model(arch, tied=tied, seed=5)  # same shapes, other initial weights
        out[arch] = (parent, _fingerprint(parent, root / f"{arch}-p"), _fingerprint(twin, root / f"{arch}-twin"))
    return out


@pytest.mark.parametrize("name", sorted(DISGUISES))
@pytest.mark.parametrize("arch", [a for a, _ in ARCHS])
def test_disguised_copy_sits_on_its_parent_and_keeps_its_invariant_groups(
    parents, tmp_path, arch: str, name: str
) -> None:
    if name == "rotate_residual" and arch == "gemma3":
        pytest.skip("residual rotation cannot preserve Gemma 3's function (its post-norms)")
    parent, fp_parent, fp_twin = parents[arch]
    child = DISGUISES[name](copy.deepcopy(parent), torch.Generator().manual_seed(3))
    fp_child = _fingerprint(child, tmp_path / "child")
    d = sketch_distance_matrix([fp_child], [fp_parent, fp_twin])[0]
    assert d[0] < 1e-3, f"{arch}/{name}: disguised copy at {d[0]:.4f} from its parent"
    assert d[1] > 0.5, f"{arch}/{name}: unrelated same-shape model only {d[1]:.4f} away"
    invariant = INVARIANT[name] if (name, arch) != ("all", "gemma3") else (*RESIDUAL, "ffn units")  # no rotation
    itself, disguised = weight_test(fp_parent, fp_parent), weight_test(fp_child, fp_parent)
    assert {g.name for g in disguised.groups} == set(GROUPS) and disguised.log10_p < -12, (arch, name)
    for group in invariant:
        mine = next(g.test for g in disguised.groups if g.name == group)
        theirs = next(g.test for g in itself.groups if g.name == group)
        assert theirs.log10_p < -12, (arch, group)
        assert (mine.signs, mine.z) == (theirs.signs, pytest.approx(theirs.z, rel=1e-3)), (arch, name, group)
        assert mine.log10_p == pytest.approx(theirs.log10_p, rel=1e-3), (arch, name, group)


@pytest.mark.parametrize("arch", [a for a, _ in ARCHS])
def test_same_shape_model_of_another_seed_is_not_derived_through_any_group(parents, arch: str) -> None:
    _, fp_parent, fp_twin = parents[arch]
    result = weight_test(fp_twin, fp_parent)
    assert {g.name for g in result.groups} == set(GROUPS)
    assert all(g.test.log10_p > -2 for g in result.groups), [(g.name, g.test.log10_p) for g in result.groups]


def test_dtype_casts_stay_on_the_parent(parents, tmp_path) -> None:
    parent, fp_parent, fp_twin = parents["llama"]
    for dtype in (torch.bfloat16, torch.float16):
        fp = _fingerprint(copy.deepcopy(parent).to(dtype), tmp_path / str(dtype))
        d = sketch_distance_matrix([fp], [fp_parent, fp_twin])[0]
        assert d[0] < 0.01 and d[1] > 0.5
