"""The architectures lineage probes, kept as data: tensor names by role, norms, activations and quirks.

A template is the tensor name below `layers.{i}.` (or below the model prefix for non-layer tensors).
One `ArchSpec` describes one layout (experts, latent attention, a hybrid's other mixer, storage quirks
included); `lineage.arch.resolve` matches a checkpoint's names against them, so a renamed `config.json` cannot
fool the choice. Adding an architecture means adding one entry here (`tests/arch/test_architecture_data.py`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Experts:
    """The routed experts of a mixture-of-experts FFN (every expert is probed as an FFN of its own).

    Attributes:
        router: the router's weight (one row per expert).
        gate / up / down: per-expert templates with `{e}` for the expert's index (Mixtral, Qwen-MoE, DeepSeek),
            or, when `stacked`, the names of 3-D tensors `[E, ...]` holding every expert.
        gate_up: a stacked tensor of gate and up rows (gpt-oss, Llama 4, Granite-MoE), first half gate.
        stacked: the expert tensors are 3-D, experts along the first dimension.
        transposed: a stacked expert's matrix is stored `[in, out]` (gpt-oss, Llama 4).
        interleaved: gate and up rows alternate in `gate_up` (gpt-oss).
        gate_up_bias / down_bias: stacked biases `[E, out]`.
        router_bias: the router's bias.
        shared: `(gate, up, down)` of an always-active shared expert, or None.
        shared_router: the shared expert's scalar gate `[1, hidden]` (Qwen2-MoE), or None.
        shared_optional: a layer may lack the shared expert (the layout then reads any `mlp.experts.N` model).
    """

    router: str
    down: str
    gate: str | None = None
    up: str | None = None
    gate_up: str | None = None
    stacked: bool = False
    transposed: bool = False
    interleaved: bool = False
    gate_up_bias: str | None = None
    down_bias: str | None = None
    router_bias: str | None = None
    shared: tuple[str, str, str] | None = None
    shared_router: str | None = None
    shared_optional: bool = False


@dataclass(frozen=True)
class Latent:
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2): queries and key-values through low-rank latents.

    Attributes:
        kv_a / kv_a_norm / kv_b: the shared key-value latent `[rank + rope, hidden]`, its norm, and its
            expansion to every head's key (no rope) and value rows `[heads * (nope + v), rank]`.
        q_a / q_a_norm / q_b: the query's latent path; a layout may instead have one `q` (V2-Lite).
        q: the query's projection when it has no latent path.
    """

    kv_a: str = "self_attn.kv_a_proj_with_mqa.weight"
    kv_a_norm: str = "self_attn.kv_a_layernorm.weight"
    kv_b: str = "self_attn.kv_b_proj.weight"
    q_a: str = "self_attn.q_a_proj.weight"
    q_a_norm: str = "self_attn.q_a_layernorm.weight"
    q_b: str = "self_attn.q_b_proj.weight"
    q: str = "self_attn.q_proj.weight"


@dataclass(frozen=True)
class ArchSpec:
    """How one layout names its tensors and computes its norms.

    Attributes:
        name: a short layout name (usually transformers' `model_type`).
        embed: candidate names of the token embedding (below the prefix).
        head: candidate names of the output head (absent when tied).
        final_norm: names of the final norm gain (empty: no final norm, or one without a gain).
        stem: the name the layers are numbered under (`layers`, or `h` for GPT-2's descendants).
        attn_norm / ffn_norm: input-norm gains of the attention and FFN blocks (below `layers.{i}.`); None
            when the block reads its input without a gain (OLMo's parameter-free LayerNorm) or with no norm
            at all (OLMo 2: only post-norms). A parallel block (GPT-J, Falcon, Phi-2, Cohere) names one norm
            for both.
        attn_post_norm / ffn_post_norm: norms applied to a block's output (Gemma 3, OLMo 2, GLM-4), or None.
        attn_sub_norm / ffn_sub_norm: norms on the input of `o` and of `down` (BitNet), or None.
        q, k, v: separate projections, or `qkv` fused rows [q; k; v] (Phi-3), or `qkv_interleaved`
            (GPT-NeoX: per head [q_h; k_h; v_h]).
        q_norm / k_norm: norms on queries and keys (Gemma 3), or None; `qk_norm_per_head` False when the norm
            spans every head at once (OLMo 2, OLMoE).
        o: attention output projection.
        gate / up / down: FFN projections; `gate_up` fused rows [gate; up] (Phi-3); gate None = not gated.
        experts: the routed experts, for a mixture-of-experts layout; a layer then has them or a dense FFN.
        latent: multi-head latent attention in place of q/k/v (`q` then names the query when it has no latent).
        mixer: `(pattern on a layer's tensor names, reason, required)` of a hybrid's other token mixer (Mamba,
            a short convolution, linear attention): a layer may hold it in place of attention, or beside it; it
            is not probed, its layer's attention (where there is one) and FFN are. `required`: the layout reads
            only models with at least one such layer (MiniMax's other layers have Mixtral's names).
        transposed: templates of matrices stored `[in, out]` (GPT-2's Conv1D), read transposed.
        norm: "rms" or "layer" (LayerNorm, with or without bias).
        gain_offset: the norm multiplies by (offset + w): 1 for Gemma and Nemotron, 0 otherwise.
        activation: FFN activation (`lineage.probe.circuits`).
        activation_params: per-layer templates of an activation's learned parameters (xIELU's alpha_p,
            alpha_n, beta, eps), in that order.
        default_head_dim: used only when config.json gives no head count.
        marks: templates a checkpoint must also hold to be this layout (what tells it from a layout whose
            names are a subset of its own: Nemotron's norm biases beside Arcee's names).
        unread: `(template, reason)` of tensors the layout has and no probe reads (a position embedding, an
            attention sink, a router's load-balancing bias): named, so that every tensor is accounted for.
        refuse: `(config key, value, reason)`: a config value under which the names mean another layout
            lineage does not read (Falcon's grouped query_key_value).
        model_types: when set, the layout applies only to these config `model_type`s (Gemma 1 has Llama's
            names but (1 + w) norm gains: only its config tells them apart).
        config_types: the config `model_type`s whose checkpoints have this layout: a config naming one of them
            over another layout's tensors contradicts the weights (`lineage.arch.checks.check_model_type`).
    """

    name: str
    embed: tuple[str, ...]
    head: tuple[str, ...]
    final_norm: tuple[str, ...]
    attn_norm: str | None
    ffn_norm: str | None
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
    qk_norm_per_head: bool = True
    attn_post_norm: str | None = None
    ffn_post_norm: str | None = None
    attn_sub_norm: str | None = None
    ffn_sub_norm: str | None = None
    experts: Experts | None = None
    latent: Latent | None = None
    mixer: tuple[str, str, bool] | None = None
    stem: str = "layers"
    transposed: tuple[str, ...] = ()
    norm: str = "rms"
    gain_offset: float = 0.0
    activation: str = "silu"
    activation_params: tuple[str, ...] = ()
    default_head_dim: int = 64
    marks: tuple[str, ...] = ()
    unread: tuple[tuple[str, str], ...] = ()
    refuse: tuple[tuple[str, object, str], ...] = ()
    model_types: tuple[str, ...] = ()
    config_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.latent is None and (self.q is None) == (self.qkv is None and self.qkv_interleaved is None):
            raise ValueError(f"{self.name}: give either q/k/v or a fused qkv template")
        if self.up is None and self.gate_up is None:
            raise ValueError(f"{self.name}: an FFN needs `up` or `gate_up`")
        if self.norm not in ("rms", "layer"):
            raise ValueError(f"{self.name}: norm must be 'rms' or 'layer'")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{self.name}: activation must be one of {ACTIVATIONS}")

    @property
    def symmetries(self) -> tuple[str, ...]:
        """The sign symmetries of the layout's math the weight test may use (`lineage.compare.identity`).

        A value dimension's sign (its `v` row with the `o` columns reading it) is free wherever v and o are
        separate linear maps: every layout here. A residual coordinate's sign commutes with RMSNorm, not with
        LayerNorm (its mean). A unit's (up row, down column) sign is free under `act(gate) * up`, not without
        a gate, nor under gpt-oss's `act(gate) * (up + 1)`.
        """
        out = ["value"]
        if self.norm == "rms":
            out.append("residual")
        gated = bool(self.gate or self.gate_up or (self.experts and (self.experts.gate or self.experts.gate_up)))
        if gated and self.activation != "swiglu_oss":
            out.append("ffn")
        return tuple(out)


#: Activations the probes compute: SiLU, GELU (erf), GELU (tanh), squared ReLU, gpt-oss's clamped SwiGLU, and
#: xIELU with its learned parameters (`activation_params`).
ACTIVATIONS: tuple[str, ...] = ("silu", "gelu", "gelu_tanh", "relu2", "swiglu_oss", "xielu")


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

_LAYER_NORM_BIASES = ("input_layernorm.bias",)
_QWEN_EXPERTS = dict(
    router="mlp.gate.weight", gate="mlp.experts.{e}.gate_proj.weight", up="mlp.experts.{e}.up_proj.weight",
    down="mlp.experts.{e}.down_proj.weight",
)  # fmt: skip
_MIXTRAL_EXPERTS = Experts(
    router="block_sparse_moe.gate.weight", gate="block_sparse_moe.experts.{e}.w1.weight",
    up="block_sparse_moe.experts.{e}.w3.weight", down="block_sparse_moe.experts.{e}.w2.weight",
)  # fmt: skip
_SHARED = ("mlp.shared_experts.gate_proj.weight", "mlp.shared_experts.up_proj.weight",
           "mlp.shared_experts.down_proj.weight")  # fmt: skip
_CORRECTION = "the router's load-balancing bias (chooses experts, adds nothing to a token's output)"
_MAMBA = "a state-space (Mamba) mixer: not probed (its layer's attention and FFN are)"
_CONV = "a gated short convolution: not probed (its layer's FFN is)"
_LIGHTNING_NAMES = r"^self_attn\.(qkv_proj|out_proj|output_gate|norm|slope_rate|query_decay|key_decay|diagonal_decay)"
_LIGHTNING = "linear (lightning) attention: not probed (its layer's FFN is)"
_QK_NORM = dict(q_norm="self_attn.q_norm.weight", k_norm="self_attn.k_norm.weight")
_POST_NORMS_ONLY = {**_LLAMA_LIKE, "attn_norm": None, "ffn_norm": None}
_GPT_J_LIKE = dict(
    embed=("wte.weight",), head=("lm_head.weight",), final_norm=("ln_f.weight",), stem="h", norm="layer",
    activation="gelu_tanh",
)  # fmt: skip

#: Known layouts. A layout reads a model when every layer holds its templates (and marks); of those that do,
#: the one giving the most tensors a role wins, ties going to the earlier entry (`lineage.arch.resolve`).
ARCHITECTURES: tuple[ArchSpec, ...] = (
    ArchSpec(
        name="gemma3",
        **{**_LLAMA_LIKE, "ffn_norm": "pre_feedforward_layernorm.weight"},
        attn_post_norm="post_attention_layernorm.weight",
        ffn_post_norm="post_feedforward_layernorm.weight",
        **_QK_NORM,
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
    # OLMo 2 and EXAONE 4: no input norms, a norm on each block's output; OLMo 2's q/k norms span all heads.
    ArchSpec(
        name="olmo2", **_POST_NORMS_ONLY, attn_post_norm="post_attention_layernorm.weight",
        ffn_post_norm="post_feedforward_layernorm.weight", **_QK_NORM, qk_norm_per_head=False,
        config_types=("olmo2",), model_types=("olmo2",),
    ),
    ArchSpec(
        name="exaone4", **_POST_NORMS_ONLY, attn_post_norm="post_attention_layernorm.weight",
        ffn_post_norm="post_feedforward_layernorm.weight", **_QK_NORM, config_types=("exaone4",),
    ),
    ArchSpec(
        name="glm4", **{k: v for k, v in _LLAMA_LIKE.items() if k not in ("gate", "up")},
        gate_up="mlp.gate_up_proj.weight", attn_post_norm="post_self_attn_layernorm.weight",
        ffn_post_norm="post_mlp_layernorm.weight", config_types=("glm4",),
    ),
    ArchSpec(
        name="glm", **{k: v for k, v in _LLAMA_LIKE.items() if k not in ("gate", "up")},
        gate_up="mlp.gate_up_proj.weight", config_types=("glm",),
    ),
    # Mixtures of experts: every expert an FFN of its own, beside a dense FFN in the layers that have one.
    ArchSpec(
        name="minimax", **_LLAMA_LIKE, experts=_MIXTRAL_EXPERTS, mixer=(_LIGHTNING_NAMES, _LIGHTNING, True),
        config_types=("minimax",),
    ),
    ArchSpec(
        name="phimoe", **_LLAMA_LIKE, experts=_MIXTRAL_EXPERTS, norm="layer", marks=_LAYER_NORM_BIASES,
        config_types=("phimoe",),
    ),
    ArchSpec(name="mixtral", **_LLAMA_LIKE, experts=_MIXTRAL_EXPERTS, config_types=("mixtral",)),
    ArchSpec(
        name="hunyuan_v1_moe", **_LLAMA_LIKE, q_norm="self_attn.query_layernorm.weight",
        k_norm="self_attn.key_layernorm.weight",
        experts=Experts(**{**_QWEN_EXPERTS, "router": "mlp.gate.wg.weight"}, shared=(
            "mlp.shared_mlp.gate_proj.weight", "mlp.shared_mlp.up_proj.weight", "mlp.shared_mlp.down_proj.weight")),
        config_types=("hunyuan_v1_moe",),
    ),  # fmt: skip
    ArchSpec(
        name="olmoe", **_LLAMA_LIKE, **_QK_NORM, qk_norm_per_head=False, experts=Experts(**_QWEN_EXPERTS),
        config_types=("olmoe",), model_types=("olmoe",),
    ),
    ArchSpec(
        name="qwen3_moe", **_LLAMA_LIKE, **_QK_NORM, experts=Experts(**_QWEN_EXPERTS), config_types=("qwen3_moe",),
    ),
    # DeepSeek-style shared experts (GLM-4.5, ERNIE 4.5), with a load-balancing bias beside the router.
    ArchSpec(
        name="glm4_moe", **_LLAMA_LIKE, experts=Experts(**_QWEN_EXPERTS, shared=_SHARED),
        unread=(("mlp.gate.e_score_correction_bias", _CORRECTION),
                ("mlp.moe_statics.e_score_correction_bias", _CORRECTION)),
        config_types=("glm4_moe", "ernie4_5_moe"),
    ),  # fmt: skip
    # DeepSeek-V2/V3: latent attention, shared experts, dense FFNs in the first layers.
    ArchSpec(
        name="deepseek_v3", **{k: v for k, v in _LLAMA_LIKE.items() if k not in ("q", "k", "v")}, latent=Latent(),
        experts=Experts(**_QWEN_EXPERTS, shared=_SHARED),
        unread=(("mlp.gate.e_score_correction_bias", _CORRECTION),), config_types=("deepseek_v2", "deepseek_v3"),
    ),  # fmt: skip
    # Qwen-MoE names, shared expert or not.
    ArchSpec(
        name="qwen2_moe", **_LLAMA_LIKE,
        experts=Experts(**_QWEN_EXPERTS,
                        shared=tuple(f"mlp.shared_expert.{n}_proj.weight" for n in ("gate", "up", "down")),
                        shared_router="mlp.shared_expert_gate.weight", shared_optional=True),
        config_types=("qwen2_moe",),
    ),  # fmt: skip
    ArchSpec(
        name="llama4_text", **_LLAMA_LIKE,
        experts=Experts(
            router="feed_forward.router.weight", gate_up="feed_forward.experts.gate_up_proj",
            down="feed_forward.experts.down_proj", stacked=True, transposed=True,
            shared=("feed_forward.shared_expert.gate_proj.weight", "feed_forward.shared_expert.up_proj.weight",
                    "feed_forward.shared_expert.down_proj.weight"),
        ),
        config_types=("llama4_text",),
    ),  # fmt: skip
    ArchSpec(
        name="gpt_oss", **_LLAMA_LIKE, activation="swiglu_oss",
        experts=Experts(
            router="mlp.router.weight", router_bias="mlp.router.bias", gate_up="mlp.experts.gate_up_proj",
            down="mlp.experts.down_proj", gate_up_bias="mlp.experts.gate_up_proj_bias",
            down_bias="mlp.experts.down_proj_bias", stacked=True, transposed=True, interleaved=True,
        ),
        unread=(("self_attn.sinks", "attention sinks (one logit per head that only dilutes the attention)"),),
        config_types=("gpt_oss",),
    ),  # fmt: skip
    ArchSpec(
        name="granitemoe", **_LLAMA_LIKE,
        experts=Experts(router="block_sparse_moe.router.layer.weight", gate_up="block_sparse_moe.input_linear.weight",
                        down="block_sparse_moe.output_linear.weight", stacked=True),
        config_types=("granitemoe",),
    ),  # fmt: skip
    ArchSpec(
        name="qwen3",
        **_LLAMA_LIKE,
        **_QK_NORM,
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
        name="starcoder2", **{k: v for k, v in _LLAMA_LIKE.items() if k not in ("gate", "up", "down")},
        up="mlp.c_fc.weight", down="mlp.c_proj.weight", norm="layer", activation="gelu_tanh",
        config_types=("starcoder2",),
    ),  # fmt: skip
    # Non-gated FFN of squared ReLU; Nemotron's LayerNorm has (1 + w) gains and biases (what tells it from Arcee).
    ArchSpec(
        name="nemotron", **{k: v for k, v in _LLAMA_LIKE.items() if k != "gate"}, norm="layer", gain_offset=1.0,
        activation="relu2", marks=_LAYER_NORM_BIASES, config_types=("nemotron",),
    ),  # fmt: skip
    # GPT-2's Conv1D stores every matrix [in, out]; its learned position embedding reads no token.
    ArchSpec(
        name="gpt2", **_GPT_J_LIKE, attn_norm="ln_1.weight", ffn_norm="ln_2.weight", qkv="attn.c_attn.weight",
        o="attn.c_proj.weight", up="mlp.c_fc.weight", down="mlp.c_proj.weight",
        transposed=("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"),
        unread=(("wpe.weight", "learned position embeddings (added to every token alike; no circuit reads them)"),),
        config_types=("gpt2",),
    ),  # fmt: skip
    # Parallel blocks: attention and FFN read one norm's output and add to the residual together.
    ArchSpec(
        name="gptj", **_GPT_J_LIKE, attn_norm="ln_1.weight", ffn_norm="ln_1.weight", q="attn.q_proj.weight",
        k="attn.k_proj.weight", v="attn.v_proj.weight", o="attn.out_proj.weight", up="mlp.fc_in.weight",
        down="mlp.fc_out.weight", unread=(("lm_head.bias", "the head's bias (no coordinate of the residual)"),),
        config_types=("gptj",),
    ),  # fmt: skip
    ArchSpec(
        name="falcon", embed=("word_embeddings.weight",), head=("lm_head.weight",), final_norm=("ln_f.weight",),
        stem="h", attn_norm="input_layernorm.weight", ffn_norm="input_layernorm.weight",
        qkv="self_attention.query_key_value.weight", o="self_attention.dense.weight", up="mlp.dense_h_to_4h.weight",
        down="mlp.dense_4h_to_h.weight", norm="layer", activation="gelu",
        refuse=(("new_decoder_architecture", True, "Falcon's grouped query_key_value (40B/180B)"),
                ("multi_query", False, "Falcon's per-head interleaved query_key_value (Falcon-RW)")),
        config_types=("falcon",),
    ),  # fmt: skip
    ArchSpec(
        name="phi", embed=("embed_tokens.weight",), head=("lm_head.weight",), final_norm=("final_layernorm.weight",),
        attn_norm="input_layernorm.weight", ffn_norm="input_layernorm.weight", q="self_attn.q_proj.weight",
        k="self_attn.k_proj.weight", v="self_attn.v_proj.weight", o="self_attn.dense.weight", up="mlp.fc1.weight",
        down="mlp.fc2.weight", norm="layer", activation="gelu_tanh",
        unread=(("lm_head.bias", "the head's bias (no coordinate of the residual)"),), config_types=("phi",),
    ),  # fmt: skip
    ArchSpec(
        name="bitnet", **_LLAMA_LIKE, attn_sub_norm="self_attn.attn_sub_norm.weight",
        ffn_sub_norm="mlp.ffn_sub_norm.weight", activation="relu2", config_types=("bitnet",),
    ),
    ArchSpec(
        name="hunyuan_v1_dense", **_LLAMA_LIKE, q_norm="self_attn.query_layernorm.weight",
        k_norm="self_attn.key_layernorm.weight", config_types=("hunyuan_v1_dense",),
    ),
    # StableLM 2: Llama's names over LayerNorms with biases (what tells it from Llama).
    ArchSpec(
        name="stablelm", **_LLAMA_LIKE, norm="layer", marks=_LAYER_NORM_BIASES, config_types=("stablelm",),
        refuse=(("use_parallel_residual", True, "StableLM's parallel residual"),
                ("qk_layernorm", True, "StableLM's per-head LayerNorms of queries and keys")),
    ),  # fmt: skip
    ArchSpec(
        name="gemma", **_LLAMA_LIKE, gain_offset=1.0, activation="gelu_tanh", model_types=("gemma",),
        config_types=("gemma",),
    ),
    # Llama, Mistral and Qwen2 share one layout; Qwen2's q/k/v biases are picked up where present.
    ArchSpec(name="llama", **_LLAMA_LIKE, config_types=("llama", "mistral", "qwen2")),
    # Hybrids: attention and FFN probed, the other mixer named and left unread.
    ArchSpec(
        name="jamba", **{**_LLAMA_LIKE, "ffn_norm": "pre_ff_layernorm.weight", "gate": "feed_forward.gate_proj.weight",
        "up": "feed_forward.up_proj.weight", "down": "feed_forward.down_proj.weight",
        "final_norm": ("final_layernorm.weight",)}, mixer=(r"^mamba\.", _MAMBA, False),
        experts=Experts(router="feed_forward.router.weight", gate="feed_forward.experts.{e}.gate_proj.weight",
                        up="feed_forward.experts.{e}.up_proj.weight", down="feed_forward.experts.{e}.down_proj.weight"),
        config_types=("jamba",),
    ),
    ArchSpec(
        name="falcon_h1", **{**_LLAMA_LIKE, "ffn_norm": "pre_ff_layernorm.weight",
        "gate": "feed_forward.gate_proj.weight", "up": "feed_forward.up_proj.weight",
        "down": "feed_forward.down_proj.weight", "final_norm": ("final_layernorm.weight",)},
        mixer=(r"^mamba\.", _MAMBA, False), config_types=("falcon_h1",),
    ),
    ArchSpec(
        name="lfm2", embed=("embed_tokens.weight",), head=("lm_head.weight",), final_norm=("embedding_norm.weight",),
        attn_norm="operator_norm.weight", ffn_norm="ffn_norm.weight", q="self_attn.q_proj.weight",
        k="self_attn.k_proj.weight", v="self_attn.v_proj.weight", o="self_attn.out_proj.weight",
        q_norm="self_attn.q_layernorm.weight", k_norm="self_attn.k_layernorm.weight", gate="feed_forward.w1.weight",
        up="feed_forward.w3.weight", down="feed_forward.w2.weight", mixer=(r"^conv\.", _CONV, False),
        config_types=("lfm2",),
    ),  # fmt: skip
    ArchSpec(
        name="apertus", **{**_LLAMA_LIKE, "attn_norm": "attention_layernorm.weight",
        "ffn_norm": "feedforward_layernorm.weight", "gate": None}, **_QK_NORM, activation="xielu",
        activation_params=tuple(f"mlp.act_fn.{p}" for p in ("alpha_p", "alpha_n", "beta", "eps")),
        config_types=("apertus",),
    ),  # fmt: skip
    # Arcee: Llama's names without a gate (squared ReLU).
    ArchSpec(
        name="arcee", **{k: v for k, v in _LLAMA_LIKE.items() if k != "gate"}, activation="relu2",
        config_types=("arcee",),
    ),
    # Cohere: one LayerNorm (no bias) before a parallel block; OLMo: LayerNorms without parameters.
    ArchSpec(
        name="cohere", **{**_LLAMA_LIKE, "ffn_norm": "input_layernorm.weight"}, norm="layer",
        config_types=("cohere", "cohere2"),
    ),
    ArchSpec(
        name="olmo", **{**_LLAMA_LIKE, "attn_norm": None, "ffn_norm": None, "final_norm": ()}, norm="layer",
        config_types=("olmo",),
    ),
)

#: Config `model_type`s of well-known architectures whose tensors are none of the layouts above: a config that
#: names one of them over tensors lineage resolved contradicts the weights. A `model_type` in neither list is
#: taken as it is (a new model family on a known layout, `smollm3` or `granite`, must not be refused).
FOREIGN_MODEL_TYPES: frozenset[str] = frozenset({
    "bart", "bert", "bloom", "codegen", "deberta", "distilbert", "electra", "gpt_bigcode", "gpt_neo", "mamba",
    "mamba2", "mpt", "opt", "roberta", "rwkv", "t5", "whisper", "xlm-roberta",
})

#: Layers lineage does not probe, named by what tells them apart: `(kind, why, pattern on a layer's tensor rest)`.
#: A model that no layout reads and that has such a layer is refused with the kind and the reason, not taken for a
#: truncated checkpoint. (A hybrid's Mamba, convolution or linear-attention layers are read by its layout.)
REFUSED_LAYERS: tuple[tuple[str, str, str], ...] = (
    ("cross-attention", "it reads another modality's states, which no token probe gives",
     r"(^|\.)(cross_attn|cross_attention|crossattention|encoder_attn)(\.|$)"),
    ("state-space (Mamba)", "lineage probes attention and FFN blocks, and a model of selective-scan layers alone "
     "has neither", r"(^|\.)(mamba|mixer)\.(A_log|in_proj|x_proj)"),
)  # fmt: skip
#: Token-embedding names of layouts refused by their layers (a model, not a tower, holds one).
REFUSED_EMBEDS: tuple[str, ...] = ("embeddings.weight",)
