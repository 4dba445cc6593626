"""Tiny checkpoints for the probe and fingerprint tests.

`write_tiny_llama` writes a Llama-layout checkpoint from a seeded generator with safetensors alone (no
transformers), so its golden fingerprint does not move when transformers changes its initialisation.
The transformers-built models cover the real layouts of the five families and the outsider.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

__all__ = ["LLAMA_CONFIG", "tiny_llama_tensors", "write_checkpoint"]

LLAMA_CONFIG = TINY_LLAMA_CONFIG


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
        "gemma2": transformers.Gemma2Config(**common, num_key_value_heads=2, head_dim=16),
        "qwen3": transformers.Qwen3Config(**common, num_key_value_heads=2, head_dim=16),
        "gemma": transformers.GemmaConfig(**common, num_key_value_heads=2, head_dim=16),
    }
    out = {}
    for i, (name, cfg) in enumerate(configs.items()):
        torch.manual_seed(100 + i)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(root / name)
        out[name] = root / name
    return out
