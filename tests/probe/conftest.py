"""Tiny checkpoints for the probe and fingerprint tests.

`write_tiny_llama` writes a Llama-layout checkpoint from a seeded generator with safetensors alone (no
transformers), so its golden fingerprint does not move when transformers changes its initialisation.
The transformers-built models cover the real layouts of the five families and the outsider.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

LLAMA_CONFIG = {
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


def tiny_llama_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny Llama state dict (hidden 32, 2 layers, GQA 4/2, tied embeddings) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    c = LLAMA_CONFIG
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    out = {"model.embed_tokens.weight": rnd(c["vocab_size"], d), "model.norm.weight": 1 + rnd(d)}
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


def write_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], config: dict, shards: int = 1) -> Path:
    """Write `tensors` as a HF-layout folder: one file, or `shards` files with an index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
        return folder
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, str(folder / fname))
        weight_map |= {n: fname for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """The golden tiny Llama, single file, float32."""
    return write_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-llama", tiny_llama_tensors(0), LLAMA_CONFIG)


@pytest.fixture(scope="session")
def tiny_llama_sharded_bf16(tmp_path_factory) -> Path:
    """The same model, bf16, in 3 shards with an index."""
    tensors = {k: v.to(torch.bfloat16) for k, v in tiny_llama_tensors(0).items()}
    return write_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-llama-bf16", tensors, LLAMA_CONFIG, shards=3)


@pytest.fixture(scope="session")
def tiny_llama_sharded(tmp_path_factory) -> Path:
    """The same model, float32, in 2 shards with an index."""
    root = tmp_path_factory.mktemp("tiny") / "tiny-llama-sharded"
    return write_checkpoint(root, tiny_llama_tensors(0), LLAMA_CONFIG, shards=2)


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory) -> dict[str, Path]:
    """Random tiny models of the real architectures, saved by transformers (real names and quirks)."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    configs = {
        "llama": transformers.LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=True),
        "qwen2": transformers.Qwen2Config(**common, num_key_value_heads=2),
        "gemma3": transformers.Gemma3TextConfig(**common, num_key_value_heads=1, head_dim=16),
        "phi3": transformers.Phi3Config(**common, num_key_value_heads=2, pad_token_id=0),
        "mistral": transformers.MistralConfig(**common, num_key_value_heads=2),
        "gpt_neox": transformers.GPTNeoXConfig(**common),
    }
    out = {}
    for i, (name, cfg) in enumerate(configs.items()):
        torch.manual_seed(100 + i)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(root / name)
        out[name] = root / name
    return out
