"""Where each role lives in each architecture: views onto q/k/v, FFN and norm weights.

Weight surgery (disguises, abliteration) is written once against these views instead of once per
architecture. A view is a slice of the parameter's storage, so writing into it (``view.copy_(...)``)
edits the model in place -- which is how Phi-3's fused ``qkv_proj`` and ``gate_up_proj`` are handled:
the q, k and v blocks are row slices of one matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DECODER_ARCHS = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "gemma3_text": "gemma3", "phi3": "phi3"}


def arch_of(model: PreTrainedModel) -> str:
    """The catalog's architecture key of a model (``llama``, ``qwen2``, ``gemma3``, ``phi3``, ``mistral``)."""
    model_type = model.config.model_type
    if model_type not in DECODER_ARCHS:
        raise ValueError(f"weight surgery supports {sorted(DECODER_ARCHS.values())}, not {model_type!r}")
    return DECODER_ARCHS[model_type]


@dataclass
class Attention:
    """Views of one layer's attention weights; ``q``/``k``/``v`` are ``[heads * head_dim, hidden]`` rows."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_bias: torch.Tensor | None
    k_bias: torch.Tensor | None
    v_bias: torch.Tensor | None
    o: torch.Tensor
    heads: int
    kv_heads: int
    head_dim: int


@dataclass
class FeedForward:
    """Views of one layer's gated FFN: ``gate``/``up`` are ``[inter, hidden]``, ``down`` is ``[hidden, inter]``."""

    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor


def layers(model: PreTrainedModel) -> list[torch.nn.Module]:
    return list(model.model.layers)


def attention(model: PreTrainedModel, layer: torch.nn.Module) -> Attention:
    cfg = model.config
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    attn = layer.self_attn
    if hasattr(attn, "qkv_proj"):  # Phi-3: rows [q | k | v]
        w = attn.qkv_proj.weight.data
        nq, nk = heads * head_dim, kv * head_dim
        q, k, v = w[:nq], w[nq : nq + nk], w[nq + nk :]
        biases = (None, None, None)
    else:
        q, k, v = attn.q_proj.weight.data, attn.k_proj.weight.data, attn.v_proj.weight.data
        biases = tuple(None if p.bias is None else p.bias.data for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    return Attention(q, k, v, *biases, o=attn.o_proj.weight.data, heads=heads, kv_heads=kv, head_dim=head_dim)


def feed_forward(layer: torch.nn.Module) -> FeedForward:
    mlp = layer.mlp
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: rows [gate | up]
        w = mlp.gate_up_proj.weight.data
        half = w.shape[0] // 2
        return FeedForward(gate=w[:half], up=w[half:], down=mlp.down_proj.weight.data)
    return FeedForward(gate=mlp.gate_proj.weight.data, up=mlp.up_proj.weight.data, down=mlp.down_proj.weight.data)


def attention_inputs(layer: torch.nn.Module) -> list[torch.Tensor]:
    """The weights that read the (normed) residual stream for attention."""
    attn = layer.self_attn
    if hasattr(attn, "qkv_proj"):
        return [attn.qkv_proj.weight.data]
    return [attn.q_proj.weight.data, attn.k_proj.weight.data, attn.v_proj.weight.data]


def ffn_inputs(layer: torch.nn.Module) -> list[torch.Tensor]:
    """The weights that read the (normed) residual stream for the FFN."""
    mlp = layer.mlp
    if hasattr(mlp, "gate_up_proj"):
        return [mlp.gate_up_proj.weight.data]
    return [mlp.gate_proj.weight.data, mlp.up_proj.weight.data]


def pre_norms(model: PreTrainedModel, layer: torch.nn.Module) -> list[tuple[torch.nn.Module, list[torch.Tensor]]]:
    """Each norm that feeds linear layers directly, with the weights it feeds.

    Gemma 3 normalises attention and FFN *outputs* too (``post_attention_layernorm``,
    ``post_feedforward_layernorm``); those feed the residual sum, not a linear layer, and are left out.
    """
    if arch_of(model) == "gemma3":
        return [(layer.input_layernorm, attention_inputs(layer)), (layer.pre_feedforward_layernorm, ffn_inputs(layer))]
    return [(layer.input_layernorm, attention_inputs(layer)), (layer.post_attention_layernorm, ffn_inputs(layer))]


def residual_writers(layer: torch.nn.Module) -> list[torch.Tensor]:
    """The weights whose outputs are added to the residual stream (``[hidden, in]``)."""
    return [layer.self_attn.o_proj.weight.data, layer.mlp.down_proj.weight.data]


def norm_gain(model: PreTrainedModel, norm: torch.nn.Module) -> torch.Tensor:
    """The effective multiplicative gain of an RMSNorm (Gemma stores ``w`` and multiplies by ``1 + w``)."""
    w = norm.weight.data
    return 1.0 + w if arch_of(model) == "gemma3" else w.clone()


def set_norm_gain(model: PreTrainedModel, norm: torch.nn.Module, gain: torch.Tensor) -> None:
    """Store an effective gain back into an RMSNorm, undoing Gemma's ``1 + w`` convention."""
    norm.weight.data.copy_(gain - 1.0 if arch_of(model) == "gemma3" else gain)


def untie_lm_head(model: PreTrainedModel) -> None:
    """Give ``lm_head`` its own copy of the embedding so the two can be edited independently."""
    if model.config.tie_word_embeddings or model.lm_head.weight is model.get_input_embeddings().weight:
        model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.data.clone())
        model.config.tie_word_embeddings = False
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().tie_word_embeddings = False


def random_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal matrix (float64): QR of a Gaussian matrix with the signs fixed."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def write_weight(view: torch.Tensor, value: torch.Tensor) -> None:
    """Write `value` into a weight in place, in the weight's own dtype (disguises compute in float64)."""
    view.copy_(value.to(view.dtype))

