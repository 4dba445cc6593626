"""A small family of real-architecture models with a known tree, built once per module that asks for it.

base (a tiny Llama, perturbed as a pre-trained model's gains are) -> instruct (every weight moved: a
fine-tune) -> disguised (rotation, MergeLock, FFN permutation, norm rescaling: the same function) -> int4
(group-wise round trip of the decoder's projections); base -> coder (another fine-tune); instruct + coder
-> merge (linear, 0.6 / 0.4). Plus an unrelated model of the same shape (another seed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TRUE_EDGES = {
    ("base", "instruct"): "finetune",
    ("base", "coder"): "finetune",
    ("instruct", "disguised"): "disguised",
    ("disguised", "int4"): "quantized",
    ("instruct", "merge"): "merge",
    ("coder", "merge"): "merge",
}


def _finetuned(model, seed: int, scale: float = 0.15):  # noqa: ANN001, ANN202 - a transformers model
    """Every weight moved by independent noise of `scale` times its own spread (a fine-tune's change)."""
    import copy

    import torch

    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in out.named_parameters():
            if p.ndim == 2:
                p.add_(scale * float(p.std()) * torch.randn(p.shape, generator=gen))
    return out


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> model folder of the family above (and `stranger`, unrelated)."""
    pytest.importorskip("transformers")
    import copy

    import torch

    from lineage.catalog.disguise import disguise_all
    from lineage.catalog.operations import quantize
    from tests.checkpoints import tiny_hf_model

    root = tmp_path_factory.mktemp("tree_family")
    base = tiny_hf_model("llama", seed=3)
    models = {"base": base, "instruct": _finetuned(base, 11), "coder": _finetuned(base, 12)}
    models["disguised"] = disguise_all(copy.deepcopy(models["instruct"]), torch.Generator().manual_seed(5))
    models["int4"] = quantize(copy.deepcopy(models["disguised"]), bits=4)
    merge = copy.deepcopy(models["instruct"])
    with torch.no_grad():
        coder = dict(models["coder"].named_parameters())
        for name, p in merge.named_parameters():
            p.copy_(0.6 * p + 0.4 * coder[name])
    models["merge"] = merge
    models["stranger"] = tiny_hf_model("llama", seed=99)
    out = {}
    for name, model in models.items():
        model.save_pretrained(root / name, safe_serialization=True)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def tree_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fingerprint cache for the tree tests (each model is fingerprinted once per session)."""
    return tmp_path_factory.mktemp("tree_cache")


@pytest.fixture(scope="session")
def family_fingerprints(family: dict[str, Path], tree_cache: Path) -> list:
    """The family's fingerprints, named by folder (cached in the session's tree cache)."""
    from dataclasses import replace

    from lineage.jobs.options import ScanOptions

    options = ScanOptions(device="cpu", cache_dir=tree_cache)
    outcomes = options.source.gather([(n, p, n) for n, p in family.items()])
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return [replace(o.fingerprint, name=o.key) for o in outcomes]
