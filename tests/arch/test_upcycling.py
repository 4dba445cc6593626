"""A mixture of experts sparse-upcycled from a dense model is derived from it; one upcycled from another seed is not.

Sparse upcycling (Komatsuzaki et al., ICLR 2023; the Qwen2 report, arXiv 2407.10671, section 2.2) starts
every expert as a copy of the dense FFN, may shuffle it along the intermediate dimension, and re-initialises
part of it; attention is carried over and the router is new. The weight test pairs (expert, unit) by their
gate profiles, so the copied units meet their dense originals whatever expert and position they landed in.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lineage.compare.identity import weight_test
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

CONFIG = {**TINY_LLAMA_CONFIG, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
          "head_dim": 16, "vocab_size": 256, "tie_word_embeddings": False}  # fmt: skip
EXPERTS = 4
OPTIONS = FingerprintOptions(device="cpu", anchors=32)


def upcycle(dense: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Mixtral-style experts from `dense`'s FFNs: each a copy shuffled along the units, the last two experts with
    half their units re-initialised, everything with a little noise (a brief training's stand-in)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in dense.items():
        if ".mlp." not in name:
            out[name] = t + 0.01 * torch.randn(t.shape, generator=g)
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        gate, up, down = (dense[p + f"mlp.{n}_proj.weight"] for n in ("gate", "up", "down"))
        units = gate.shape[0]
        out[p + "block_sparse_moe.gate.weight"] = 0.1 * torch.randn(EXPERTS, gate.shape[1], generator=g)
        for e in range(EXPERTS):
            perm = torch.randperm(units, generator=g)
            w1, w3, w2 = gate[perm].clone(), up[perm].clone(), down[:, perm].clone()
            if e >= 2:  # Drop-Upcycling: half the units drawn afresh
                fresh = torch.randperm(units, generator=g)[: units // 2]
                w1[fresh] = 0.1 * torch.randn(len(fresh), w1.shape[1], generator=g)
                w3[fresh] = 0.1 * torch.randn(len(fresh), w3.shape[1], generator=g)
                w2[:, fresh] = 0.1 * torch.randn(w2.shape[0], len(fresh), generator=g)
            for k, w in (("w1", w1), ("w3", w3), ("w2", w2)):
                out[p + f"block_sparse_moe.experts.{e}.{k}.weight"] = w + 0.01 * torch.randn(w.shape, generator=g)
    return out


def test_an_upcycled_moe_is_derived_from_its_dense_model_and_not_from_another(tmp_path: Path) -> None:
    dense = write_checkpoint(tmp_path / "dense", tiny_llama_tensors(0, config=CONFIG), config=CONFIG)
    moe_config = {**CONFIG, "model_type": "mixtral", "num_local_experts": EXPERTS}
    ours = write_checkpoint(tmp_path / "moe", upcycle(tiny_llama_tensors(0, config=CONFIG), 1), config=moe_config)
    other = write_checkpoint(tmp_path / "other", upcycle(tiny_llama_tensors(7, config=CONFIG), 2), config=moe_config)
    fp_dense, fp_ours, fp_other = (fingerprint_model(p, OPTIONS) for p in (dense, ours, other))
    assert fp_ours.settings["layout"] == "mixtral"
    derived = weight_test(fp_ours, fp_dense)
    assert derived.log10_p < -10, derived.to_dict()
    units = next(g for g in derived.groups if g.name == "ffn units")
    assert units.test.log10_p < -10  # the copied units found their originals across experts and positions
    assert weight_test(fp_other, fp_dense).log10_p > -3
