"""Tiny random models of transformers' own text architectures, for the every-architecture harness.

Each is made as a new user would make one: `AutoConfig.for_model(model_type, **TINY)` and
`AutoModelForCausalLM.from_config`, saved with `save_pretrained` (safetensors). A noisy copy (2% Gaussian
noise on every tensor, relative to its own scale: a stand-in for a fine-tune) and an independent seed are
written beside the base.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: The text architectures of transformers 5 the harness builds (issue 23's lists).
DENSE_READ_ON_MAIN = (
    "llama", "mistral", "ministral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt_neox",
    "stablelm", "granite", "helium", "hunyuan_v1_dense", "ernie4_5", "seed_oss", "smollm3", "bitnet",
)  # fmt: skip
MIXTURE_OF_EXPERTS = (
    "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "granitemoe", "phimoe", "deepseek_v2", "deepseek_v3",
    "gpt_oss", "llama4_text", "minimax", "ernie4_5_moe", "glm4_moe", "hunyuan_v1_moe", "jamba",
)  # fmt: skip
DENSE_OTHER = (
    "gpt2", "gptj", "falcon", "phi", "starcoder2", "olmo", "olmo2", "cohere", "cohere2", "glm", "glm4",
    "exaone4", "apertus", "arcee", "nemotron", "lfm2", "falcon_h1", "mamba",
)  # fmt: skip
ARCHITECTURES = DENSE_READ_ON_MAIN + MIXTURE_OF_EXPERTS + DENSE_OTHER

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, EXPERTS, VOCAB = 128, 4, 4, 2, 256, 4, 512
#: One set of sizes under every spelling the configs use; a config ignores the keys it does not know.
TINY = dict(
    vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
    num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HIDDEN // HEADS, max_position_embeddings=256,
    n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN, n_positions=256,
    num_local_experts=EXPERTS, num_experts=EXPERTS, n_routed_experts=EXPERTS, moe_num_experts=EXPERTS,
    num_experts_per_tok=2, moe_k=2, moe_intermediate_size=FFN // 2, moe_topk=2, n_group=1, topk_group=1,
    first_k_dense_replace=1, attn_layer_period=2, attn_layer_offset=1, n_shared_experts=1, moe_num_shared_experts=1,
    shared_expert_intermediate_size=FFN,
    kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=16, qk_nope_head_dim=16, v_head_dim=32,
    tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)  # fmt: skip
#: Keys some configs refuse or that would break them, per model type.
_DROP: dict[str, tuple[str, ...]] = {
    t: ("head_dim", "num_key_value_heads") for t in ("falcon", "gpt2", "gptj")
}


#: Settings that make a hybrid a hybrid at 4 layers (LFM2's short convolutions beside attention).
_EXTRA: dict[str, dict] = {"lfm2": {"layer_types": ["conv", "full_attention", "conv", "full_attention"]}}


def build(model_type: str, seed: int, folder: Path) -> Path:
    """Build, initialise with `seed` and save one tiny model of `model_type` into `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = {k: v for k, v in TINY.items() if k not in _DROP.get(model_type, ())} | _EXTRA.get(model_type, {})
    config = AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def noisy_copy(base: Path, folder: Path, scale: float = 0.02, seed: int = 1234) -> Path:
    """A copy of `base` with Gaussian noise of `scale` times each tensor's own standard deviation."""
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for path in sorted(base.glob("*.safetensors")):
        tensors = load_file(path)
        out = {}
        for name, t in tensors.items():
            if t.is_floating_point() and t.numel() > 1:
                x = t.float()
                sd = float(x.std()) or float(x.abs().mean()) or 1.0
                x = x + scale * sd * torch.randn(x.shape, generator=gen)
                t = x.to(t.dtype)
            out[name] = t.contiguous()
        save_file(out, folder / path.name, metadata={"format": "pt"})
    for path in base.glob("*.json"):
        (folder / path.name).write_text(path.read_text())
    return folder


def names(folder: Path) -> dict[str, list[int]]:
    """Every tensor of the saved model, with its shape."""
    from safetensors import safe_open

    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            for n in f.keys():
                out[n] = list(f.get_slice(n).get_shape())
    return out


if __name__ == "__main__":  # python -m tests.arch.zoo OUT: build every base and print its tensor names
    import sys
    import time

    root = Path(sys.argv[1])
    for mt in sys.argv[2:] or ARCHITECTURES:
        t0 = time.time()
        try:
            build(mt, 0, root / mt)
            print(f"== {mt} {time.time() - t0:.1f}s")
            print(json.dumps(names(root / mt)))
        except Exception as exc:  # noqa: BLE001
            print(f"== {mt} FAILED {type(exc).__name__}: {exc}")
