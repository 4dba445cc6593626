"""Lineage's sketches survive every function-preserving disguise and still tell unrelated models apart.

Each disguise of the catalog (neuron permutation, MergeLock per-head maps, norm-gain rescaling, residual
rotation with gains folded) is applied to tiny models of the real layouts; the disguised copy must sit at
distance ~0 from its parent, while a same-shape model from another seed sits far away.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

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
def test_disguised_copy_sits_on_its_parent(parents, tmp_path, arch: str, name: str) -> None:
    if name == "rotate_residual" and arch == "gemma3":
        pytest.skip("residual rotation cannot preserve Gemma 3's function (its post-norms)")
    parent, fp_parent, fp_twin = parents[arch]
    child = DISGUISES[name](copy.deepcopy(parent), torch.Generator().manual_seed(3))
    fp_child = _fingerprint(child, tmp_path / "child")
    d = sketch_distance_matrix([fp_child], [fp_parent, fp_twin])[0]
    assert d[0] < 1e-3, f"{arch}/{name}: disguised copy at {d[0]:.4f} from its parent"
    assert d[1] > 0.5, f"{arch}/{name}: unrelated same-shape model only {d[1]:.4f} away"


def test_dtype_casts_stay_on_the_parent(parents, tmp_path) -> None:
    parent, fp_parent, fp_twin = parents["llama"]
    for dtype in (torch.bfloat16, torch.float16):
        fp = _fingerprint(copy.deepcopy(parent).to(dtype), tmp_path / str(dtype))
        d = sketch_distance_matrix([fp], [fp_parent, fp_twin])[0]
        assert d[0] < 0.01 and d[1] > 0.5
