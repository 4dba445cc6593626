"""Tensor-name templates of the architectures lineage probes, kept as data.

A template is the tensor name below `layers.{i}.` (or below the model prefix for non-layer tensors).
One `ArchSpec` describes one layout; `lineage.arch.resolve` matches a checkpoint's names against them,
so a renamed `config.json` cannot fool the choice. Adding an architecture means adding one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    """How one layout names its tensors and computes its norms.

    Attributes:
        name: a short layout name (usually transformers' `model_type`).
        embed: candidate names of the token embedding (below the prefix).
        head: candidate names of the output head (absent when tied).
        final_norm: names of the final norm gain.
        attn_norm / ffn_norm: input-norm gains of the attention and FFN blocks (below `layers.{i}.`).
        attn_post_norm / ffn_post_norm: norms applied to a block's output (Gemma 3), or None.
        q, k, v: separate projections, or `qkv` fused rows [q; k; v] (Phi-3), or `qkv_interleaved`
            (GPT-NeoX: per head [q_h; k_h; v_h]).
        q_norm / k_norm: per-head norms on queries and keys (Gemma 3), or None.
        o: attention output projection.
        gate / up / down: FFN projections; `gate_up` fused rows [gate; up] (Phi-3); gate None = not gated.
        norm: "rms" or "layer" (LayerNorm with bias).
        gain_offset: RMSNorm multiplies by (offset + w): 1 for Gemma, 0 otherwise.
        activation: FFN activation.
        default_head_dim: used only when config.json gives no head count.
        model_types: when set, the layout applies only to these config `model_type`s (Gemma 1 has Llama's
            names but (1 + w) norm gains: only its config tells them apart).
        config_types: the config `model_type`s whose checkpoints have this layout: a config naming one of them
            over another layout's tensors contradicts the weights (`lineage.arch.checks.check_model_type`).
    """

    name: str
    embed: tuple[str, ...]
    head: tuple[str, ...]
    final_norm: tuple[str, ...]
    attn_norm: str
    ffn_norm: str
    o: str
    down: str
    up: str | None = None
    gate: str | None = None
    gate_up: str | None = None
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_interleaved: str | None = None
    q_norm: str | None = None
    k_norm: str | None = None
    attn_post_norm: str | None = None
    ffn_post_norm: str | None = None
    norm: str = "rms"
    gain_offset: float = 0.0
    activation: str = "silu"
    default_head_dim: int = 64
    model_types: tuple[str, ...] = ()
    config_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.q is None) == (self.qkv is None and self.qkv_interleaved is None):
            raise ValueError(f"{self.name}: give either q/k/v or a fused qkv template")
        if self.up is None and self.gate_up is None:
            raise ValueError(f"{self.name}: an FFN needs `up` or `gate_up`")
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"{self.name}: norm must be 'rms' or 'layer'")


_LLAMA_LIKE = dict(
    embed=("embed_tokens.weight",),
    head=("lm_head.weight",),
    final_norm=("norm.weight",),
    attn_norm="input_layernorm.weight",
    ffn_norm="post_attention_layernorm.weight",
    q="self_attn.q_proj.weight",
    k="self_attn.k_proj.weight",
    v="self_attn.v_proj.weight",
    o="self_attn.o_proj.weight",
    gate="mlp.gate_proj.weight",
    up="mlp.up_proj.weight",
    down="mlp.down_proj.weight",
)

#: Known layouts, most specific first: the first whose templates all resolve wins.
ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec(
        name="gemma3",
        **{**_LLAMA_LIKE, "ffn_norm": "pre_feedforward_layernorm.weight"},
        attn_post_norm="post_attention_layernorm.weight",
        ffn_post_norm="post_feedforward_layernorm.weight",
        q_norm="self_attn.q_norm.weight",
        k_norm="self_attn.k_norm.weight",
        gain_offset=1.0,
        activation="gelu_tanh",
        default_head_dim=256,
        config_types=("gemma3", "gemma3_text"),
    ),
    ArchSpec(
        name="gemma2",
        **{**_LLAMA_LIKE, "ffn_norm": "pre_feedforward_layernorm.weight"},
        attn_post_norm="post_attention_layernorm.weight",
        ffn_post_norm="post_feedforward_layernorm.weight",
        gain_offset=1.0,
        activation="gelu_tanh",
        default_head_dim=256,
        config_types=("gemma2",),
    ),
    ArchSpec(
        name="qwen3",
        **_LLAMA_LIKE,
        q_norm="self_attn.q_norm.weight",
        k_norm="self_attn.k_norm.weight",
        default_head_dim=128,
        config_types=("qwen3",),
    ),
    ArchSpec(
        name="phi3",
        embed=("embed_tokens.weight",),
        head=("lm_head.weight",),
        final_norm=("norm.weight",),
        attn_norm="input_layernorm.weight",
        ffn_norm="post_attention_layernorm.weight",
        qkv="self_attn.qkv_proj.weight",
        o="self_attn.o_proj.weight",
        gate_up="mlp.gate_up_proj.weight",
        down="mlp.down_proj.weight",
        default_head_dim=128,
        config_types=("phi3",),
    ),
    ArchSpec(
        name="gpt_neox",
        embed=("embed_in.weight",),
        head=("embed_out.weight",),
        final_norm=("final_layer_norm.weight",),
        attn_norm="input_layernorm.weight",
        ffn_norm="post_attention_layernorm.weight",
        qkv_interleaved="attention.query_key_value.weight",
        o="attention.dense.weight",
        up="mlp.dense_h_to_4h.weight",
        down="mlp.dense_4h_to_h.weight",
        norm="layer",
        activation="gelu",
        config_types=("gpt_neox",),
    ),
    ArchSpec(
        name="gemma", **_LLAMA_LIKE, gain_offset=1.0, activation="gelu_tanh", model_types=("gemma",),
        config_types=("gemma",),
    ),
    # Llama, Mistral and Qwen2 share one layout; Qwen2's q/k/v biases are picked up where present.
    ArchSpec(name="llama", **_LLAMA_LIKE, config_types=("llama", "mistral", "qwen2")),
)

#: Config `model_type`s of well-known architectures whose tensors are none of the layouts above: a config that
#: names one of them over tensors lineage resolved contradicts the weights. A `model_type` in neither list is
#: taken as it is (a new model family on a known layout, `smollm3` or `granite`, must not be refused).
FOREIGN_MODEL_TYPES: frozenset[str] = frozenset({
    "bart", "bert", "bloom", "codegen", "deberta", "distilbert", "electra", "falcon", "gpt2", "gpt_bigcode",
    "gpt_neo", "gptj", "mamba", "mamba2", "mpt", "opt", "phi", "roberta", "rwkv", "starcoder2", "t5", "whisper",
    "xlm-roberta",
})
