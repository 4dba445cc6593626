"""Tiny configurations of the real architectures, one builder per family.

Each builder returns the genuine transformers model class of its family, shrunk: the tensor *names*,
layouts and quirks are those of the real checkpoints (Qwen2's q/k/v biases, Phi-3's fused ``qkv_proj``
and ``gate_up_proj``, Gemma 3's four norms per layer, ``q_norm``/``k_norm`` and ``(1 + w)`` gains,
GQA where the real model has it, tied embeddings on the small sizes, Mixtral's routed experts). Only the widths
are small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

ARCHITECTURES = ("llama", "qwen2", "gemma3", "phi3", "mistral", "gpt_neox", "mixtral")


@dataclass(frozen=True)
class Shape:
    """The sizes of a tiny model (validated here so a bad recipe fails before any training).

    Args:
        arch: one of ``ARCHITECTURES``.
        hidden: residual width.
        layers: number of decoder layers.
        heads: query heads.
        kv_heads: key/value heads (fewer than ``heads`` for GQA).
        intermediate: FFN width.
        vocab: embedding rows (the tokenizer may use fewer, as real models pad their vocabularies).
        tied: whether ``lm_head`` shares the embedding matrix.
    """

    arch: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"architecture {self.arch!r}: use one of {ARCHITECTURES}")
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"{self.arch}: hidden must divide by heads and heads by kv_heads")
        if (self.hidden // self.heads) % 2:
            raise ValueError(f"{self.arch}: head_dim must be even for rotary embeddings")
        if min(self.hidden, self.layers, self.intermediate, self.vocab) <= 0:
            raise ValueError(f"{self.arch}: sizes must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def _common(s: Shape, bos: int, eos: int, pad: int) -> dict:
    return dict(
        vocab_size=s.vocab,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        tie_word_embeddings=s.tied,
        max_position_embeddings=512,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


def _llama(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import LlamaConfig

    return LlamaConfig(**_common(s, **ids), num_key_value_heads=s.kv_heads, rope_parameters={
        "rope_type": "default", "rope_theta": 500000.0})


def _mistral(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import MistralConfig

    return MistralConfig(**_common(s, **ids), num_key_value_heads=s.kv_heads, head_dim=s.head_dim,
                         sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


def _qwen2(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import Qwen2Config

    return Qwen2Config(**_common(s, **ids), num_key_value_heads=s.kv_heads, rope_parameters={
        "rope_type": "default", "rope_theta": 1000000.0})


def _gemma3(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import Gemma3TextConfig

    # Gemma 3 alternates local (sliding) and global layers, five to one; with few layers the last is global.
    layer_types = ["sliding_attention"] * (s.layers - 1) + ["full_attention"]
    return Gemma3TextConfig(**_common(s, **ids), num_key_value_heads=s.kv_heads, head_dim=s.head_dim,
                            query_pre_attn_scalar=s.head_dim, sliding_window=64, layer_types=layer_types)


def _phi3(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import Phi3Config

    return Phi3Config(**_common(s, **ids), num_key_value_heads=s.kv_heads, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0})


def _gpt_neox(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import GPTNeoXConfig

    cfg = _common(s, **ids)
    # GPT-NeoX (Pythia) rotates a quarter of each head; it has no GQA.
    return GPTNeoXConfig(**cfg, use_parallel_residual=True, rope_parameters={
        "rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})


def _mixtral(s: Shape, **ids: int) -> PretrainedConfig:
    from transformers import MixtralConfig

    # Four experts of the FFN's width, two of them active per token (Mixtral's ratio of eight to two, halved).
    return MixtralConfig(**_common(s, **ids), num_key_value_heads=s.kv_heads, head_dim=s.head_dim,
                         num_local_experts=4, num_experts_per_tok=2, sliding_window=None,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})


_CONFIGS: dict[str, Callable[..., PretrainedConfig]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "gemma3": _gemma3,
    "phi3": _phi3,
    "gpt_neox": _gpt_neox,
    "mixtral": _mixtral,
}


def make_config(shape: Shape, *, bos: int, eos: int, pad: int) -> PretrainedConfig:
    """The transformers config of a tiny model of ``shape`` (special token ids from its tokenizer)."""
    cfg = _CONFIGS[shape.arch](shape, bos=bos, eos=eos, pad=pad)
    cfg.use_cache = False
    return cfg


def make_model(shape: Shape, *, bos: int, eos: int, pad: int, seed: int) -> PreTrainedModel:
    """A freshly initialised model (fp32) of the real class for ``shape.arch``, seeded."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(shape, bos=bos, eos=eos, pad=pad), dtype=torch.float32)
    return model.float()
