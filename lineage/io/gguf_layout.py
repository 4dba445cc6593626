"""From a GGUF header to the Hugging Face view of the same model: names, config, conversions undone, vocabulary.

llama.cpp's converter (convert_hf_to_gguf.py) renames every tensor with gguf-py's `TensorNameMap` tables and
changes a few of them on the way; lineage probes Hugging Face names and values, so each change is undone:

- Names: the tables map many Hugging Face spellings to one GGUF name. Inverting them gives candidates; the
  one kept is the spelling lineage's own layout for that architecture uses (`lineage.arch.spec`), so
  `blk.N.ffn_norm` becomes `post_attention_layernorm` in Llama and `pre_feedforward_layernorm` in Gemma 2/3
  (whose `post_attention_norm` is the post-attention norm) without a hand-written table.
- `llama`-architecture files (Llama, Mistral, Mixtral) have the rows of Q and K permuted within each head
  (`LlamaModel.permute`: rotary pairs interleaved instead of split in halves); the inverse map is applied.
- Gemma, Gemma 2 and Gemma 3 store every `*norm.weight` as `w + 1` (the gain the kernel multiplies by).
- Rotary tables (`rope_freqs`, `rope_factors_*`) are computed from the config in Hugging Face, not stored:
  they are left out, so parameter counts agree with the original checkpoint.
- A mixture of experts' stacked tensors (`ffn_gate_exps`, `[E, out, in]`) are read expert by expert, each
  expert's slice of the stack under the layout's per-expert name (`mlp.experts.{e}.gate_proj`); latent
  attention's split `attn_k_b`/`attn_v_b` are joined back into `kv_b_proj` (`lineage.arch.gguf`).
- Tensors the converter transposed (GPT-2's Conv1D) or split (a stacked layout's `gate_up`, a fused
  `ffn_gate_up_exps` read under per-expert names) are planned as rows of stored tensors joined, alternated,
  transposed or stacked again (`TensorPlan.parts`), so every tensor has the Hugging Face shape and values.

Gemma 3's embedding is truncated by the converter to the real vocabulary; the padding rows are gone, so the
reader reports the shorter matrix (and `vocab_size` from it): nothing to undo.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from gguf.constants import MODEL_ARCH, MODEL_ARCH_NAMES, MODEL_TENSOR
from gguf.tensor_mapping import TensorNameMap

from lineage.arch.gguf import (
    BYTE_LEVEL_TOKENIZER,
    EXPERT_STACKS,
    FUSED_GATE_UP,
    GGUF_ARCHITECTURES,
    JOINED,
    GGUFArch,
)
from lineage.arch.spec import ARCHITECTURES, ArchSpec
from lineage.errors import CheckpointError, UnsupportedArchitectureError
from lineage.io.gguf_plan import (
    BLOCK,
    TensorPlan,
    block_of,
    expert_count,
    fused_expert_plans,
    fused_kind,
    gguf_name,
    stacked_plans,
)
from lineage.io.vocab import Vocabulary, canonical_token

_T = MODEL_TENSOR
_COMPUTED = frozenset({_T.ROPE_FREQS, _T.ROPE_FACTORS_LONG, _T.ROPE_FACTORS_SHORT, _T.ATTN_ROT_EMBD})
_SPECIAL_TOKEN_TYPES = frozenset({2, 3, 4, 5, 6})  # unknown, control, user-defined, unused, byte
_LONG_ARRAY = 64  # metadata arrays longer than this (vocabulary, merges, scores) stay out of `metadata`
_PREFIXES = ("model.", "transformer.")


@dataclass(frozen=True)
class GGUFLayout:
    """The Hugging Face view of one GGUF model.

    Attributes:
        arch: GGUF `general.architecture`.
        config: a transformers-style config synthesised from the metadata.
        plans: Hugging Face name -> its `TensorPlan`, for every tensor kept (an expert's slice of a stack, too).
    """

    arch: str
    config: dict[str, Any]
    plans: dict[str, TensorPlan]


def gguf_layout(path: Path, metadata: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> GGUFLayout:
    """Map a GGUF model's tensors to Hugging Face names and synthesise its config.

    Args:
        path: the file (for error messages).
        metadata: the header's metadata.
        shapes: GGUF tensor name -> shape in GGML order.

    Returns:
        The layout.

    Raises:
        CheckpointError: no or an unknown `general.architecture`, Q/K shapes that do not fit the head counts,
            or two GGUF tensors that map to one name.
        UnsupportedArchitectureError: an architecture gguf-py knows and `lineage.arch.gguf` does not map.
    """
    arch = metadata.get("general.architecture")
    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    if not isinstance(arch, str) or arch not in by_name:
        raise CheckpointError(
            path, f"GGUF general.architecture {arch!r} is unknown to the installed gguf package; update gguf"
        )
    known = GGUF_ARCHITECTURES.get(arch)
    if known is None:  # read under a guess, a converter's value changes would go undone: a wrong answer
        raise UnsupportedArchitectureError(
            f"{path}: GGUF architecture '{arch}' is not mapped to a lineage layout yet (its converter's value "
            f"changes are unchecked); read the Hugging Face checkpoint instead (mapped: "
            f"{', '.join(sorted(GGUF_ARCHITECTURES))})"
        )
    model_type, layout = known.model_type, known.layout
    label = f"{metadata.get('general.basename', '')} {metadata.get('general.name', '')}".lower()
    if known.renamed and known.renamed[0] in label:
        model_type = known.renamed[1]
    held = {n.split(".")[2] for n in shapes if BLOCK.match(n) and n.count(".") >= 2}  # `ffn_gate_inp`...
    model_type, layout = next(((t, lay) for mark, t, lay in known.marked if mark in held), (model_type, layout))
    blocks = 1 + max((int(m[1]) for n in shapes if (m := BLOCK.match(n))), default=-1)
    if blocks > len(shapes):  # every block holds tensors: a larger index is a corrupt name, not 10^9 layers
        raise CheckpointError(path, f"GGUF tensor names reach block {blocks - 1} with {len(shapes)} tensors: corrupt")
    table = _name_table(by_name[arch], blocks)
    spec = next((s for s in ARCHITECTURES if s.name == layout), None)
    wanted = _wanted_stems(spec, blocks)
    _check_metadata(path, arch, metadata, shapes, blocks)
    _check_variant(path, arch, known, metadata, shapes, table)
    config = _config(arch, model_type, metadata, shapes)
    plans: dict[str, TensorPlan] = {}
    taken: dict[str, str] = {}

    def add(plan: TensorPlan) -> None:
        if plan.hf_name in taken:
            raise CheckpointError(
                path, f"GGUF tensors '{taken[plan.hf_name]}' and '{plan.gguf_name}' both map to '{plan.hf_name}': "
                "corrupt file"
            )  # fmt: skip
        taken[plan.hf_name] = plan.gguf_name
        plans[plan.hf_name] = plan

    parts = {part for pair in JOINED.values() for part in pair}
    stacked = spec is not None and spec.experts is not None and spec.experts.stacked
    for name in shapes:
        stem, dot, suffix = name.rpartition(".")
        stem, suffix = (stem, dot + suffix) if suffix in ("weight", "bias") else (name, "")
        kind, candidates = table.get(stem, (fused_kind(stem), ()))
        if kind in _COMPUTED or kind in parts or (stacked and kind in (*EXPERT_STACKS, FUSED_GATE_UP)):
            continue
        if kind in known.suffixed and suffix == ".weight":  # the converter added the `.weight`: taken off again
            suffix = ""
        hf = _pick(candidates, wanted, stem, suffix)
        if kind == FUSED_GATE_UP and suffix == ".weight":
            for plan in fused_expert_plans(path, name, shapes[name], spec, block_of(name)):
                add(plan)
            continue
        if kind in EXPERT_STACKS and wanted.get(hf.removesuffix(suffix)):
            for e in range(expert_count(path, name, shapes[name])):
                add(TensorPlan(name, wanted[hf.removesuffix(suffix)].format(e=e) + suffix, expert=e))
            continue
        if kind in known.transposed and suffix == ".weight":
            add(TensorPlan(name, hf, parts=((name, 0, None),), transpose=True))
            continue
        add(TensorPlan(name, hf, _head_groups(path, arch, kind, name, shapes[name], config),
                       1.0 if known.norm_plus_one and hf.endswith("norm.weight") else 0.0))  # fmt: skip
    if stacked:
        for block in range(blocks):
            for plan in stacked_plans(path, spec, block, shapes):
                add(plan)
    for whole, (first, second) in JOINED.items():
        for block in range(blocks):
            stem = gguf_name(whole, block)
            names = [gguf_name(k, block) + ".weight" for k in (first, second)]
            if stem + ".weight" not in shapes and all(n in shapes for n in names):  # else: stored whole, or absent
                _, candidates = table.get(stem, (None, ()))
                add(TensorPlan(names[0], _pick(candidates, wanted, stem, ".weight"), joined=names[1]))
    return GGUFLayout(arch, config, plans)


def gguf_vocabulary(metadata: dict[str, Any]) -> Vocabulary | None:
    """The embedded tokenizer's vocabulary (`tokenizer.ggml.tokens`), None when the file has none.

    Token types 2-6 (unknown, control, user-defined, unused, byte) are special; strings are canonical
    (`canonical_token`), byte-level when `tokenizer.ggml.model` is `gpt2`.

    Raises:
        ValueError: tokens that are not a list of strings, or token types that are not one integer per token
            (the caller names the file).
    """
    if "tokenizer.ggml.tokens" not in metadata:
        return None
    tokens = metadata["tokenizer.ggml.tokens"]
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise ValueError("tokenizer.ggml.tokens is not a list of token strings")
    types = metadata.get("tokenizer.ggml.token_type", [1] * len(tokens))
    if not isinstance(types, list) or len(types) != len(tokens) or not all(isinstance(t, int) for t in types):
        raise ValueError(f"tokenizer.ggml.token_type is not one integer for each of the {len(tokens)} tokens")
    byte_level = metadata.get("tokenizer.ggml.model") == BYTE_LEVEL_TOKENIZER
    special = frozenset(i for i, t in enumerate(types) if t in _SPECIAL_TOKEN_TYPES)
    return Vocabulary(tuple(canonical_token(t, byte_level) for t in tokens), special, "gguf")


def plain_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata without the tokenizer's arrays and other long lists: what a model card would say."""
    return {
        k: v
        for k, v in metadata.items()
        if not (isinstance(v, list) and (len(v) > _LONG_ARRAY or k.startswith("tokenizer.ggml.")))
    }


@lru_cache(maxsize=16)
def _name_table(arch: MODEL_ARCH, blocks: int) -> dict[str, tuple[MODEL_TENSOR, tuple[str, ...]]]:
    """GGUF name (without `.weight`) -> (tensor kind, Hugging Face spellings in gguf-py's table order)."""
    # TensorNameMap.__init__ `update`s the class-level block table with an architecture's overrides, which
    # would leak into every map built afterwards; an instance copy keeps the shared table intact.
    names = TensorNameMap.__new__(TensorNameMap)
    names.block_mappings_cfg = dict(TensorNameMap.block_mappings_cfg)
    TensorNameMap.__init__(names, arch, blocks)
    table: dict[str, tuple[MODEL_TENSOR, list[str]]] = {}
    spellings: dict[str, list[str]] = defaultdict(list)
    for key, (kind, stored) in names.mapping.items():
        table[stored] = (kind, [])
        if key != stored:
            spellings[stored].append(key)
    return {g: (kind, tuple(spellings[g])) for g, (kind, _) in table.items()}


def _wanted_stems(spec: ArchSpec | None, blocks: int) -> dict[str, str | None]:
    """The Hugging Face names (without `.weight`) that lineage's layout for this architecture uses, each with
    None, or for a stack of experts (`model.layers.0.mlp.experts.gate_proj`, the converter's name for the stack)
    the per-expert name its slices are read under (`model.layers.0.mlp.experts.{e}.gate_proj`). Names sit under
    `model.` or, for GPT-2's descendants, `transformer.`: gguf-py's table lists the model's own spelling."""
    if spec is None:
        return {}
    top = [f"{p}{t}" for p in _PREFIXES for t in (*spec.embed, *spec.final_norm, *(t for t, _ in spec.unread))]
    top += list(spec.head)
    per_layer = [spec.attn_norm, spec.ffn_norm, spec.o, spec.down, spec.up, spec.gate, spec.gate_up, spec.q, spec.k,
                 spec.v, spec.qkv, spec.qkv_interleaved, spec.q_norm, spec.k_norm, spec.attn_post_norm,
                 spec.ffn_post_norm, *(t for t, _ in spec.unread)]  # fmt: skip
    if spec.latent:
        lat = spec.latent
        per_layer += [lat.kv_a, lat.kv_a_norm, lat.kv_b, lat.q_a, lat.q_a_norm, lat.q_b, lat.q]
    stacks: list[str] = []
    if spec.experts:
        ex = spec.experts
        per_layer += [ex.router, ex.router_bias, *(ex.shared or ()), ex.shared_router]
        stacks = [t for t in (ex.gate, ex.up, ex.down) if t and "{e}" in t]
    stems: dict[str, str | None] = {n.removesuffix(".weight"): None for n in top}
    for i in range(blocks):
        stems |= {f"{p}{spec.stem}.{i}.{t.removesuffix('.weight')}": None for p in _PREFIXES for t in per_layer if t}
        stems |= {f"model.layers.{i}.{t.removesuffix('.weight').replace('.{e}', '')}":
                  f"model.layers.{i}.{t.removesuffix('.weight')}" for t in stacks}  # fmt: skip
    return stems


def _check_variant(
    path: Path, arch: str, known: GGUFArch, metadata: dict[str, Any], shapes: dict[str, tuple[int, ...]], table: dict
) -> None:  # fmt: skip
    """Refuse, by name, a file of a variant the architecture's layout does not read (`GGUFArch.refused`,
    `max_kv_heads`), and a fused expert bias (no converter's fused bias has been checked)."""
    for name in shapes:
        stem = name.rpartition(".")[0]
        kind = table.get(stem, (fused_kind(stem),))[0]
        what = next((w for k, w in known.refused if k == kind), None)
        if what:
            raise UnsupportedArchitectureError(f"{path}: tensor '{name}' is {what}, which lineage does not read")
        if kind == FUSED_GATE_UP and not name.endswith(".weight"):
            raise UnsupportedArchitectureError(
                f"{path}: tensor '{name}' is a fused gate and up expert bias, which lineage does not read"
            )
    kv = metadata.get(f"{arch}.attention.head_count_kv")
    kv = max(kv) if isinstance(kv, list) and kv else kv
    if known.max_kv_heads is not None and isinstance(kv, int) and kv > known.max_kv_heads[0]:
        raise UnsupportedArchitectureError(
            f"{path}: {arch}.attention.head_count_kv is {kv} (more than {known.max_kv_heads[0]}): "
            f"{known.max_kv_heads[1]}, which lineage does not read"
        )


def _pick(candidates: tuple[str, ...], wanted: dict[str, str | None], stem: str, suffix: str) -> str:
    """The Hugging Face name (with `suffix`) of a GGUF tensor whose spellings are `candidates`."""
    for cand in candidates:
        if cand in wanted:
            return cand + suffix
        if suffix and cand + "_" + suffix[1:] in wanted:  # `e_score_correction_bias`: the converter adds the dot
            return cand + "_" + suffix[1:]
    # A tensor the layout does not name: transformers' own spelling is the `model.`-rooted one listed first.
    for cand in candidates:
        if cand.startswith("model."):
            return cand + suffix
    return (candidates[0] if candidates else stem) + suffix


def _head_groups(
    path: Path, arch: str, kind: MODEL_TENSOR | None, name: str, dims: tuple[int, ...], config: dict
) -> int | None:
    permuted = GGUF_ARCHITECTURES[arch].permuted_qk
    if not permuted or kind not in (MODEL_TENSOR.ATTN_Q, MODEL_TENSOR.ATTN_K):
        return None
    groups = config.get("num_attention_heads" if kind == MODEL_TENSOR.ATTN_Q else "num_key_value_heads")
    rows = dims[-1] if len(dims) > 1 else dims[0]
    if not isinstance(groups, int) or groups <= 0 or rows % (2 * groups):
        raise CheckpointError(
            path,
            f"tensor '{name}' has {rows} rows, which {groups!r} attention heads (from the GGUF metadata) cannot "
            "split into rotary pairs: the head counts or the tensor are corrupt",
        )
    return groups


#: Metadata keys (below `<arch>.`) that hold a size: each must be a positive integer where present.
_POSITIVE_KEYS = ("embedding_length", "feed_forward_length", "attention.head_count",
                  "attention.head_count_kv", "attention.key_length", "attention.value_length")  # fmt: skip
_EPS_KEYS = ("attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon")


def _check_metadata(
    path: Path, arch: str, metadata: dict[str, Any], shapes: dict[str, tuple[int, ...]], blocks: int
) -> None:
    """The metadata the config is synthesised from, against itself and the tensors: counts are positive
    integers, epsilons positive and finite, `block_count` the number of `blk.N` blocks and `embedding_length`
    the token embedding's width. A contradiction is named by its GGUF key, before any tensor is read."""

    def refuse(problem: str) -> None:
        raise CheckpointError(path, f"GGUF metadata {problem}: the metadata is corrupt or edited; re-convert the model")

    for key in _POSITIVE_KEYS:
        value = metadata.get(f"{arch}.{key}")
        # Per-layer arrays (hybrid models give 0 heads to their non-attention layers) are left to the layout.
        if value is not None and not isinstance(value, list) and (
            not isinstance(value, int) or isinstance(value, bool) or value <= 0
        ):
            refuse(f"{arch}.{key} is {value!r}, not a positive integer")
    for key in _EPS_KEYS:
        value = metadata.get(f"{arch}.{key}")
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0
        ):
            refuse(f"{arch}.{key} is {value!r}, not a positive finite number")
    declared = metadata.get(f"{arch}.block_count")  # 0 is a header-only file's: compared, not refused
    if declared is not None and (not isinstance(declared, int) or isinstance(declared, bool) or declared < 0):
        refuse(f"{arch}.block_count is {declared!r}, not a count")
    if declared is not None and declared != blocks:
        span = f" (blk.0 to blk.{blocks - 1})" if blocks else ""
        refuse(f"{arch}.block_count is {declared}, but the tensors hold {blocks} blocks{span}")
    embed = shapes.get("token_embd.weight")
    width = metadata.get(f"{arch}.embedding_length")
    if width is not None and embed and len(embed) == 2 and width != embed[0]:
        refuse(f"{arch}.embedding_length is {width}, but 'token_embd.weight' is {embed[0]} wide")


def _config(arch: str, model_type: str, metadata: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    def get(key: str) -> Any:
        value = metadata.get(f"{arch}.{key}")
        # Some converters store per-layer head counts as arrays; the first layer's is the model's.
        return value[0] if isinstance(value, list) and value else value

    embed = shapes.get("token_embd.weight")
    heads, hidden = get("attention.head_count"), get("embedding_length")
    config: dict[str, Any] = {
        "model_type": model_type,
        "num_hidden_layers": get("block_count"),
        "hidden_size": hidden,
        "intermediate_size": get("feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv") or heads,
        "head_dim": get("attention.key_length")
        or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 else None),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon"),
        "rope_theta": get("rope.freq_base"),
        "max_position_embeddings": get("context_length"),
        "vocab_size": embed[-1] if embed else get("vocab_size"),
        "tie_word_embeddings": "output.weight" not in shapes,
    }
    return {k: v for k, v in config.items() if v is not None}
