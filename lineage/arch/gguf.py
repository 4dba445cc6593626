"""The GGUF architectures lineage reads, as data: what llama.cpp's converter did to each, to be undone.

A GGUF file names its architecture (`general.architecture`, one of gguf-py's `MODEL_ARCH` names) and its
tensors by gguf-py's role names (`blk.N.attn_q`); `lineage.io.gguf_layout` inverts gguf-py's `TensorNameMap`
to the Hugging Face spellings of the layout named here, and undoes the value changes listed here
(llama.cpp's `convert_hf_to_gguf.py`: `LlamaModel.permute` on Q and K, Gemma's `w + 1` norm gains).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    model_type: str
    layout: str
    permuted_qk: bool = False
    norm_plus_one: bool = False
    renamed: tuple[str, str] | None = None


#: GGUF `general.architecture` -> how lineage reads it. Another architecture gets its own name as model type
#: and no layout: its tensors keep the first Hugging Face spelling gguf-py lists.
GGUF_ARCHITECTURES: dict[str, GGUFArch] = {
    "llama": GGUFArch("llama", "llama", permuted_qk=True, renamed=("mistral", "mistral")),
    "qwen2": GGUFArch("qwen2", "llama"),
    "qwen3": GGUFArch("qwen3", "qwen3"),
    "gemma": GGUFArch("gemma", "gemma", norm_plus_one=True),
    "gemma2": GGUFArch("gemma2", "gemma2", norm_plus_one=True),
    "gemma3": GGUFArch("gemma3_text", "gemma3", norm_plus_one=True),
    "phi3": GGUFArch("phi3", "phi3"),
}
#: The byte-level BPE tokenizer's name in GGUF metadata (`tokenizer.ggml.model`): GPT-2's tokenizer, not its
#: architecture.
BYTE_LEVEL_TOKENIZER = "gpt2"
