"""The GGUF architectures lineage reads, as data: what llama.cpp's converter did to each, to be undone.

A GGUF file names its architecture (`general.architecture`, one of gguf-py's `MODEL_ARCH` names) and its
tensors by gguf-py's role names (`blk.N.attn_q`); `lineage.io.gguf_layout` inverts gguf-py's `TensorNameMap`
to the Hugging Face spellings of the layout named here, and undoes the value changes listed here
(llama.cpp's `convert_hf_to_gguf.py`: `LlamaModel.permute` on Q and K, Gemma's `w + 1` norm gains).

What the converter does to every mixture of experts and to latent attention is the same for all of them, so it
is data here too, not per architecture:

- Routed experts are stacked in index order into one 3-D tensor per projection (`blk.N.ffn_gate_exps`,
  `ffn_up_exps`, `ffn_down_exps`, `[E, out, in]`); a layout that names experts one by one reads each expert as
  its slice of the stack (`EXPERT_STACKS`).
- Latent attention's `kv_b_proj` is stored whole (`attn_kv_b`) by older converters and split by newer ones
  into `attn_k_b` (each head's key rows, transposed: `[heads, rank, key]`) and `attn_v_b` (`[heads, value,
  rank]`), for the absorbed kernel; the two are joined back, head by head (`JOINED`).
- A layout that stacks its experts itself (gpt-oss, Llama 4, Granite-MoE: `ArchSpec.experts.stacked`) has its
  fused `gate_up` split into the gate and up stacks, gate first (`GptOssModel`: the even rows, then the odd;
  `Llama4Model`, `GraniteMoeModel`: the first half, then the second), and every stack made `[E, out, in]`
  (gpt-oss's and Llama 4's `[E, in, out]` transposed; biases split likewise). The reader joins them back into the
  layout's own tensors, so the layout's views apply as to the safetensors checkpoint.
- `--fuse-gate-up-exps` (`ModelBase.modify_tensors`) stores a layer's gate and up stacks as one
  `ffn_gate_up_exps` `[E, 2 * units, in]`, gate rows first (`FUSED_GATE_UP`); the converter writes it only for
  architectures whose gguf-py tensor list holds it (Qwen3-Next, Qwen3.5-MoE, Gemma 4, DeepSeek-OCR, Mistral 4
  in gguf 0.19, none mapped here), and lineage reads it with that meaning wherever it is found: each expert's
  gate and up rows for a per-expert layout, the layout's own `gate_up` for a stacked one.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf.constants import MODEL_TENSOR

_T = MODEL_TENSOR


@dataclass(frozen=True)
class GGUFArch:
    """One GGUF architecture.

    Attributes:
        model_type: the transformers `model_type` its config gets.
        layout: the `lineage.arch.spec.ArchSpec` whose spellings its tensors get.
        permuted_qk: Q and K rows were permuted within each head by the converter (`LlamaModel.permute`).
        norm_plus_one: every `*norm.weight` is stored as `w + 1`.
        renamed: `(word, model_type)`: a file converted under this architecture whose name holds `word` is of
            that `model_type` (Mistral converts as `llama`; its name is the only trace of it).
        marked: `(tensor, model_type, layout)`: a file holding a tensor of that GGUF name (below `blk.N.`) is of
            that `model_type` and layout (Mixtral converts as `llama`, its experts tell it apart).
        transposed: kinds whose weight the converter transposed from the Hugging Face `[in, out]` (GPT-2's
            Conv1D): read transposed back, so the layout's own view applies as to the safetensors checkpoint.
        suffixed: kinds the converter gave a `.weight` the Hugging Face name lacks (gpt-oss's `sinks`).
        refused: `(kind, what)`: a file holding that kind is of a variant lineage does not read (Granite-MoE's
            shared expert, Falcon-40B's second norm), refused by name rather than read without it.
        max_kv_heads: `(count, what)`: the most key/value heads a file may declare, and what a file with more is
            (Falcon: the converter regroups a grouped `query_key_value` that lineage's Falcon layout does not read).
    """

    model_type: str
    layout: str
    permuted_qk: bool = False
    norm_plus_one: bool = False
    renamed: tuple[str, str] | None = None
    marked: tuple[tuple[str, str, str], ...] = ()
    transposed: frozenset[MODEL_TENSOR] = frozenset()
    suffixed: frozenset[MODEL_TENSOR] = frozenset()
    refused: tuple[tuple[MODEL_TENSOR, str], ...] = ()
    max_kv_heads: tuple[int, str] | None = None


#: GGUF `general.architecture` -> how lineage reads it. Another architecture gets its own name as model type
#: and no layout: its tensors keep the first Hugging Face spelling gguf-py lists.
GGUF_ARCHITECTURES: dict[str, GGUFArch] = {
    "llama": GGUFArch("llama", "llama", permuted_qk=True, renamed=("mistral", "mistral"),
                      marked=(("ffn_gate_inp", "mixtral", "mixtral"),)),
    "qwen2": GGUFArch("qwen2", "llama"),
    "qwen3": GGUFArch("qwen3", "qwen3"),
    "gemma": GGUFArch("gemma", "gemma", norm_plus_one=True),
    "gemma2": GGUFArch("gemma2", "gemma2", norm_plus_one=True),
    "gemma3": GGUFArch("gemma3_text", "gemma3", norm_plus_one=True),
    "phi3": GGUFArch("phi3", "phi3"),
    "olmo2": GGUFArch("olmo2", "olmo2"),
    # Mixtures of experts (`Qwen2MoeModel`, `Qwen3MoeModel`, `OlmoeModel`: no value changes but the stacking).
    "qwen2moe": GGUFArch("qwen2_moe", "qwen2_moe"),
    "qwen3moe": GGUFArch("qwen3_moe", "qwen3_moe"),
    "olmoe": GGUFArch("olmoe", "olmoe"),
    # DeepSeek-V2/V3 (`DeepseekV2Model`): latent attention, no Q/K permutation; V3's router has a
    # load-balancing bias (`exp_probs_b`), V2's has none.
    "deepseek2": GGUFArch("deepseek_v2", "deepseek_v3", marked=(("exp_probs_b", "deepseek_v3", "deepseek_v3"),)),
    # GPT-2 (`GPT2Model`): every Conv1D weight (`c_attn`, `c_proj`, `c_fc`) transposed to `[out, in]`.
    "gpt2": GGUFArch("gpt2", "gpt2", transposed=frozenset({_T.ATTN_QKV, _T.ATTN_OUT, _T.FFN_UP, _T.FFN_DOWN})),
    # Falcon (`FalconModel`): `query_key_value` regrouped from kv groups [q..., k, v] to [q; k; v], which is no
    # change for one key/value head (7B, multi-query), the one layout lineage reads.
    "falcon": GGUFArch("falcon", "falcon", max_kv_heads=(1, "Falcon-40B/180B's grouped query_key_value"),
                       refused=((_T.ATTN_NORM_2, "Falcon-40B/180B's second norm and grouped query_key_value"),)),
    # gpt-oss (`GptOssModel`), Llama 4 (`Llama4Model`: no Q/K permutation) and Granite-MoE (`GraniteMoeModel`, a
    # `LlamaModel`: Q/K permuted): their stacked experts are split and stacked as `[E, out, in]` (module docstring).
    "gpt-oss": GGUFArch("gpt_oss", "gpt_oss", suffixed=frozenset({_T.ATTN_SINKS})),
    "llama4": GGUFArch("llama4_text", "llama4_text"),
    "granitemoe": GGUFArch("granitemoe", "granitemoe", permuted_qk=True,
                           refused=((_T.FFN_GATE_SHEXP, "Granite-MoE-Shared's shared expert"),)),
}  # fmt: skip

#: The GGUF kinds that stack every routed expert of a layer in one tensor `[E, out, in]`; each expert's slice is
#: read under the layout's per-expert template (`Experts.gate`, `up`, `down` in `lineage.arch.spec`).
EXPERT_STACKS: frozenset[MODEL_TENSOR] = frozenset(
    {MODEL_TENSOR.FFN_GATE_EXP, MODEL_TENSOR.FFN_UP_EXP, MODEL_TENSOR.FFN_DOWN_EXP}
)
#: The stacked gate and up rows of newer converters' `--fuse-gate-up-exps` (`[E, 2 * units, in]`, gate first:
#: `torch.cat([gate, up], dim=1)` in `ModelBase.modify_tensors`), and the two kinds it replaces.
FUSED_GATE_UP = MODEL_TENSOR.FFN_GATE_UP_EXP
GATE_UP_PARTS: tuple[MODEL_TENSOR, MODEL_TENSOR] = (MODEL_TENSOR.FFN_GATE_EXP, MODEL_TENSOR.FFN_UP_EXP)
#: A Hugging Face tensor the converter split in two: its GGUF kind -> (the first part, stored transposed head by
#: head, `[heads, in, rows]`; the second part, `[heads, rows, in]`). Each head's rows are the first part's, then
#: the second's (`DeepseekV2Model.modify_tensors`: `kv_b.view(heads, key + value, rank)` split on dim 1).
JOINED: dict[MODEL_TENSOR, tuple[MODEL_TENSOR, MODEL_TENSOR]] = {
    MODEL_TENSOR.ATTN_KV_B: (MODEL_TENSOR.ATTN_K_B, MODEL_TENSOR.ATTN_V_B),
}
#: The byte-level BPE tokenizer's name in GGUF metadata (`tokenizer.ggml.model`): GPT-2's tokenizer, not its
#: architecture.
BYTE_LEVEL_TOKENIZER = "gpt2"
