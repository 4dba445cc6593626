"""Tiny Llama-layout checkpoints written with safetensors alone, shared by the test folders.

No transformers here: the values come from a seeded torch generator, so golden numbers do not move when
transformers changes its initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY_LLAMA_CONFIG = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 128,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def tiny_llama_tensors(
    seed: int = 0, parent: dict[str, torch.Tensor] | None = None, noise: float = 0.01, config: dict | None = None
) -> dict[str, torch.Tensor]:
    """A tiny Llama state dict (by default hidden 32, 2 layers, GQA 4/2, tied embeddings; any `config` of
    this shape): random from `seed`, or `parent` plus Gaussian noise of std `noise` (a stand-in for a
    fine-tune)."""
    g = torch.Generator().manual_seed(seed)
    if parent is not None:
        return {k: v + noise * torch.randn(v.shape, generator=g) for k, v in parent.items()}
    c = config or TINY_LLAMA_CONFIG
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    out = {"model.embed_tokens.weight": rnd(c["vocab_size"], d), "model.norm.weight": 1 + rnd(d)}
    if not c.get("tie_word_embeddings", False):
        out["lm_head.weight"] = rnd(c["vocab_size"], d)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": 1 + rnd(d),
            p + "post_attention_layernorm.weight": 1 + rnd(d),
            p + "self_attn.q_proj.weight": rnd(q, d),
            p + "self_attn.k_proj.weight": rnd(kv, d),
            p + "self_attn.v_proj.weight": rnd(kv, d),
            p + "self_attn.o_proj.weight": rnd(d, q),
            p + "mlp.gate_proj.weight": rnd(f, d),
            p + "mlp.up_proj.weight": rnd(f, d),
            p + "mlp.down_proj.weight": rnd(d, f),
        }
    return out


def write_checkpoint(
    folder: Path, tensors: dict[str, torch.Tensor], config: dict | None = None, shards: int = 1
) -> Path:
    """Write `tensors` as a Hugging Face folder: `model.safetensors`, or `shards` files with an index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or TINY_LLAMA_CONFIG), encoding="utf-8")
    names = sorted(tensors)
    if shards == 1:
        save_file({n: tensors[n].contiguous() for n in names}, str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, str(folder / fname))
        weight_map |= {n: fname for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def tiny_hf_model(arch: str, *, tied: bool = False, seed: int = 0) -> torch.nn.Module:
    """A tiny random transformers model of a real architecture (the catalog's builder), norm gains and biases
    perturbed away from their init values.

    Fresh models have all gains equal (1, or 0 for Gemma's ``1 + w``), which would hide mistakes in folding
    or rescaling them; real checkpoints never look like that. Needs the `catalog` extra (transformers).
    """
    from lineage.catalog.architectures import Shape, make_model

    shape = Shape(arch, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=96, vocab=512, tied=tied)
    model = make_model(shape, bos=0, eos=1, pad=2, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()
