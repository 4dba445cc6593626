"""Tiny GGUF models for the GGUF tests (no tests here), written the way llama.cpp's converter writes them.

`hf_tensors` builds the Hugging Face tensors of a tiny model of one architecture; `write_gguf` converts them
as convert_hf_to_gguf.py does (names through gguf-py's `TensorNameMap`, Q/K rows permuted for `llama`,
Gemma norms stored as `w + 1`, optional quantisation with `gguf.quants.quantize`) and writes them with
`gguf.GGUFWriter`. Widths are multiples of 32 so that Q8_0 and Q4_0 blocks fit every row.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf.constants import GGMLQuantizationType
from safetensors.torch import save_file

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB = 64, 2, 4, 2, 96, 48
HEAD_DIM = HIDDEN // HEADS
MODEL_TYPE = {
    "llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2",
    "gemma3": "gemma3_text", "phi3": "phi3",
}  # fmt: skip
TOKENS = ["<|endoftext|>", "<|im_start|>"] + [f"Ġw{i}" if i % 2 else f"t{i}" for i in range(VOCAB - 2)]
TOKEN_TYPES = [3, 3] + [1] * (VOCAB - 2)


def hf_tensors(arch: str, *, tied: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """The Hugging Face tensors of a tiny model of GGUF architecture `arch` (float32)."""
    gen = torch.Generator().manual_seed(seed)
    q_rows, kv_rows = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.o_proj.weight": (HIDDEN, q_rows), p + "mlp.down_proj.weight": (HIDDEN, FFN)}
        shapes |= {p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)}
        if arch == "phi3":
            shapes |= {p + "self_attn.qkv_proj.weight": (q_rows + 2 * kv_rows, HIDDEN)}
            shapes |= {p + "mlp.gate_up_proj.weight": (2 * FFN, HIDDEN)}
        else:
            shapes |= {
                p + "self_attn.q_proj.weight": (q_rows, HIDDEN),
                p + "self_attn.k_proj.weight": (kv_rows, HIDDEN),
                p + "self_attn.v_proj.weight": (kv_rows, HIDDEN),
                p + "mlp.gate_proj.weight": (FFN, HIDDEN),
                p + "mlp.up_proj.weight": (FFN, HIDDEN),
            }
        if arch == "qwen2":
            shapes |= {p + f"self_attn.{x}_proj.bias": (r,) for x, r in (("q", q_rows), ("k", kv_rows), ("v", kv_rows))}
        if arch in ("qwen3", "gemma3"):
            shapes |= {p + "self_attn.q_norm.weight": (HEAD_DIM,), p + "self_attn.k_norm.weight": (HEAD_DIM,)}
        if arch in ("gemma2", "gemma3"):
            shapes |= {p + "pre_feedforward_layernorm.weight": (HIDDEN,)}
            shapes |= {p + "post_feedforward_layernorm.weight": (HIDDEN,)}
    if not tied:
        shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`, as convert_hf_to_gguf.py applies it to Q and K."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute`, written independently of the reader's row map."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(arch: str, hf_name: str, w: np.ndarray) -> np.ndarray:
    """What the converter stores for one Hugging Face tensor."""
    if arch == "llama" and ".q_proj." in hf_name:
        return permute(w, HEADS)
    if arch == "llama" and ".k_proj." in hf_name:
        return permute(w, KV_HEADS)
    if arch.startswith("gemma") and hf_name.endswith("norm.weight"):
        return w + 1
    return w


def gguf_name(arch: str, hf_name: str) -> str:
    """The converter's GGUF name of a Hugging Face tensor (gguf-py's own table)."""
    names = gguf.get_tensor_name_map(_arch(arch), LAYERS)
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    assert name is not None, hf_name
    return name


def write_gguf(
    path: Path,
    arch: str,
    tensors: dict[str, torch.Tensor],
    *,
    qtype: GGMLQuantizationType = GGMLQuantizationType.F32,
    name: str = "Tiny Model",
    base_model: str | None = "Tiny Base",
    vocab: bool = True,
    split_max_tensors: int = 0,
) -> Path:
    """Convert `tensors` as llama.cpp does and write them to `path`; matrices are stored as `qtype`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    if base_model:
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, base_model)
        writer.add_base_model_repo_url(0, "https://huggingface.co/org/tiny-base")
    writer.add_block_count(LAYERS)
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    if vocab:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(TOKENS)
        writer.add_token_types(TOKEN_TYPES)
    for hf_name, w in tensors.items():
        data = convert(arch, hf_name, w.numpy().astype(np.float32))
        if qtype != GGMLQuantizationType.F32 and data.ndim == 2:
            writer.add_tensor(gguf_name(arch, hf_name), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name(arch, hf_name), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def expected(arch: str, tensors: dict[str, torch.Tensor], qtype: GGMLQuantizationType) -> dict[str, np.ndarray]:
    """What a correct reader returns: the stored values dequantised, then the converter's changes undone."""
    out = {}
    for hf_name, w in tensors.items():
        data = convert(arch, hf_name, w.numpy().astype(np.float32))
        if qtype != GGMLQuantizationType.F32 and data.ndim == 2:
            data = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
        if arch == "llama" and ".q_proj." in hf_name:
            data = unpermute(data, HEADS)
        elif arch == "llama" and ".k_proj." in hf_name:
            data = unpermute(data, KV_HEADS)
        elif arch.startswith("gemma") and hf_name.endswith("norm.weight"):
            data = data - 1
        out[hf_name] = data
    return out


def write_hf_folder(folder: Path, arch: str, tensors: dict[str, torch.Tensor]) -> Path:
    """The same model as a Hugging Face folder (`model.safetensors`, `config.json`)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = {
        "model_type": MODEL_TYPE[arch], "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
        "intermediate_size": FFN, "vocab_size": VOCAB, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": "lm_head.weight" not in tensors,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _arch(arch: str) -> gguf.MODEL_ARCH:
    return {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
