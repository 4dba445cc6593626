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
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf.constants import MODEL_TENSOR


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
    """

    model_type: str
    layout: str
    permuted_qk: bool = False
    norm_plus_one: bool = False
    renamed: tuple[str, str] | None = None
    marked: tuple[tuple[str, str, str], ...] = ()


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
}  # fmt: skip

#: The GGUF kinds that stack every routed expert of a layer in one tensor `[E, out, in]`; each expert's slice is
#: read under the layout's per-expert template (`Experts.gate`, `up`, `down` in `lineage.arch.spec`).
EXPERT_STACKS: frozenset[MODEL_TENSOR] = frozenset(
    {MODEL_TENSOR.FFN_GATE_EXP, MODEL_TENSOR.FFN_UP_EXP, MODEL_TENSOR.FFN_DOWN_EXP}
)
#: A Hugging Face tensor the converter split in two: its GGUF kind -> (the first part, stored transposed head by
#: head, `[heads, in, rows]`; the second part, `[heads, rows, in]`). Each head's rows are the first part's, then
#: the second's (`DeepseekV2Model.modify_tensors`: `kv_b.view(heads, key + value, rank)` split on dim 1).
JOINED: dict[MODEL_TENSOR, tuple[MODEL_TENSOR, MODEL_TENSOR]] = {
    MODEL_TENSOR.ATTN_KV_B: (MODEL_TENSOR.ATTN_K_B, MODEL_TENSOR.ATTN_V_B),
}
#: The byte-level BPE tokenizer's name in GGUF metadata (`tokenizer.ggml.model`): GPT-2's tokenizer, not its
#: architecture.
BYTE_LEVEL_TOKENIZER = "gpt2"
