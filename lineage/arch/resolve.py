"""Match a checkpoint's tensor names to an `ArchSpec`: which tensor plays which role in each layer.

Only names, shapes and config.json are used (no tensor data). The prefix above `layers.{i}.` is found
from the names, so text-only and multimodal layouts (`model.`, `language_model.model.`, `gpt_neox.`)
resolve alike; a vision tower's layers are skipped because they do not carry every template of the
layout (the most complete prefix of the first matching layout wins). Once a layout matches, every tensor's
dtype, rank and shape and every config value the layout reads are checked (`lineage.arch.checks`), so bad input
fails here, in one line, and never inside a matrix product.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

from lineage.arch.checks import (
    MATRIX_ROLES,
    check_dtypes,
    check_model_type,
    check_rank,
    check_shape,
    check_sizes,
    config_eps,
    config_int,
    contradiction,
    model_location,
    text_config,
)
from lineage.arch.spec import ARCHITECTURES, ArchSpec
from lineage.errors import CheckpointError, UnsupportedArchitectureError

_LAYER_RE = re.compile(r"^(?P<prefix>.*?)layers\.(?P<index>\d+)\.(?P<rest>.+)$")
# Layers lineage cannot probe, told apart from a truncated checkpoint: routed experts (Mixtral's
# `block_sparse_moe`, Qwen-MoE's `mlp.experts.N` and `mlp.gate` router, DeepSeek's `shared_experts`) and
# cross-attention to another modality (Llama 3.2 Vision's `cross_attn`, encoder-decoder `encoder_attn`).
_UNSUPPORTED_LAYOUTS = (
    (
        "mixture-of-experts",
        re.compile(r"(^|\.)(experts|block_sparse_moe|shared_experts?|moe)(\.|$)|^mlp\.(gate|router)\."),
    ),
    ("cross-attention", re.compile(r"(^|\.)(cross_attn|cross_attention|crossattention|encoder_attn)(\.|$)")),
)


class _NamedShapes(Protocol):
    config: dict

    def names(self) -> list[str]: ...

    def info(self, name: str): ...  # -> object with `.shape`


@dataclass(frozen=True)
class LayerTensors:
    """The tensor names of one transformer layer, by role (None where the layout has no such tensor)."""

    index: int
    names: dict[str, str | None]

    def __getitem__(self, role: str) -> str | None:
        return self.names.get(role)


@dataclass(frozen=True)
class ResolvedModel:
    """A checkpoint's layout, resolved: the spec, the role of every tensor, and the attention geometry."""

    spec: ArchSpec
    prefix: str
    embed: str
    head: str | None  # None when the head is tied to the embedding
    final_norm: str | None
    layers: tuple[LayerTensors, ...]
    hidden_size: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _find(names: set[str], candidates: tuple[str, ...], prefix: str) -> str | None:
    for cand in candidates:
        if prefix + cand in names:
            return prefix + cand
    # The head often sits above the prefix (`lm_head.weight` beside `model.`, `embed_out.weight` beside `gpt_neox.`).
    for cand in candidates:
        hits = sorted((n for n in names if (n == cand or n.endswith("." + cand)) and "layers." not in n),
                      key=lambda n: (len(n), n))
        if hits:
            return hits[0]
    return None


def _layer_names(spec: ArchSpec, rests: set[str]) -> dict[str, str | None]:
    roles = {
        "attn_norm": spec.attn_norm, "ffn_norm": spec.ffn_norm, "o": spec.o, "down": spec.down,
        "up": spec.up, "gate": spec.gate, "gate_up": spec.gate_up, "q": spec.q, "k": spec.k, "v": spec.v,
        "qkv": spec.qkv, "qkv_interleaved": spec.qkv_interleaved, "q_norm": spec.q_norm, "k_norm": spec.k_norm,
        "attn_post_norm": spec.attn_post_norm, "ffn_post_norm": spec.ffn_post_norm,
    }  # fmt: skip
    out: dict[str, str | None] = {role: (t if t in rests else None) for role, t in roles.items()}
    for role in ("q", "k", "v", "qkv", "qkv_interleaved", "o", "up", "down", "gate_up"):
        t = roles[role]
        bias = t[: -len("weight")] + "bias" if t else None
        out[f"{role}_bias"] = bias if bias and bias in rests else None
    for role in ("attn_norm", "ffn_norm"):  # LayerNorm biases (GPT-NeoX)
        t = roles[role]
        bias = t[: -len("weight")] + "bias"
        out[f"{role}_bias"] = bias if bias in rests else None
    return out


def _required(spec: ArchSpec) -> tuple[str, ...]:
    # Every template the layout names must be there: Gemma 3's extra norms tell it from Llama.
    templates = (
        spec.q, spec.k, spec.v, spec.qkv, spec.qkv_interleaved, spec.o, spec.gate, spec.up, spec.gate_up,
        spec.down, spec.attn_norm, spec.ffn_norm, spec.q_norm, spec.k_norm, spec.attn_post_norm, spec.ffn_post_norm,
    )  # fmt: skip
    return tuple(t for t in templates if t)


def resolve_model(reader: _NamedShapes) -> ResolvedModel:
    """Resolve the layout of the checkpoint behind `reader`.

    Args:
        reader: a `lineage.io.CheckpointReader` (anything with `names()`, `info(name).shape`, `config`).

    Returns:
        The resolved model.

    Raises:
        UnsupportedArchitectureError: no known layout matches the tensor names.
    """
    names = set(reader.names())
    by_prefix: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name in names:
        m = _LAYER_RE.match(name)
        if m:
            by_prefix[m["prefix"]][int(m["index"])].add(m["rest"])
    scaled = sorted(n for n in names if n.endswith(("weight_scale", "weight_scale_inv")))
    if scaled:
        raise CheckpointError(
            model_location(reader),
            f"block-scaled (FP8) weights such as '{scaled[0]}': lineage reads weights without their scales; "
            "dequantize the checkpoint to BF16 first",
        )
    mixed = _mixed_layout(names, by_prefix)
    if mixed is not None:
        prefix, index, kind, rest = mixed
        raise UnsupportedArchitectureError(
            f"{model_location(reader)}: layer {index}: {kind} layout is not supported "
            f"('{prefix}layers.{index}.{rest}'); lineage probes dense decoder layers only"
        )
    model_type = text_config(reader).get("model_type")
    for spec in ARCHITECTURES:
        if spec.model_types and model_type not in spec.model_types:
            continue
        # Most layers first; ties broken by name, so the choice never depends on set order.
        for prefix, layers in sorted(by_prefix.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            embed = _find(names, spec.embed, prefix)
            if embed is None or len(reader.info(embed).shape) != 2:
                continue
            required = _required(spec)
            indices = sorted(i for i, rests in layers.items() if all(t in rests for t in required))
            if not indices:
                continue
            broken = sorted(set(layers) - set(indices))
            if broken:
                missing = sorted(t for t in required if t not in layers[broken[0]])
                raise CheckpointError(
                    model_location(reader),
                    f"layer {broken[0]} lacks {', '.join(missing)} ({len(broken)} incomplete layer(s)): "
                    "a shard is missing or the checkpoint is truncated",
                )
            _check_numbering(reader, prefix, indices)
            check_model_type(reader, spec, model_type)
            return _build(reader, spec, prefix, embed, {i: layers[i] for i in indices}, names)
    raise UnsupportedArchitectureError(
        f"{model_location(reader)}: tensor names match no known layout "
        f"({', '.join(s.name for s in ARCHITECTURES)}); lineage cannot probe this architecture"
    )


def _check_numbering(reader, prefix: str, indices: list[int]) -> None:  # noqa: ANN001
    """Layers are numbered 0, 1, ... without a gap: a gap is a lost shard or a corrupt name, and a layer index
    such as 99999999999 must not be taken for a model of that depth."""
    if indices == list(range(len(indices))):
        return
    missing = next(i for i in range(len(indices)) if i != indices[i])
    shown = ", ".join(str(i) for i in indices[:8]) + (", ..." if len(indices) > 8 else "")
    raise CheckpointError(
        model_location(reader),
        f"the layers under '{prefix}layers.' are numbered {shown}, not 0 to {len(indices) - 1} "
        f"(layer {missing} is missing): a shard is missing or the tensor names are corrupt",
    )


def _build(reader, spec, prefix, embed, layers, names) -> ResolvedModel:  # noqa: ANN001
    vocab, hidden = (int(x) for x in reader.info(embed).shape)
    head = _find(names, spec.head, prefix)
    head = head if head != embed else None
    final_norm = _find(names, spec.final_norm, prefix)
    cfg = text_config(reader)
    resolved_layers = tuple(
        LayerTensors(i, {r: (f"{prefix}layers.{i}.{t}" if t else None) for r, t in _layer_names(spec, rests).items()})
        for i, rests in sorted(layers.items())
    )
    # Header facts first (dtypes, ranks), so that nothing below indexes a shape that is not there.
    check_dtypes(reader, [n for n in (embed, head, final_norm) if n] + [
        n for lt in resolved_layers for n in lt.names.values() if n
    ])  # fmt: skip
    for name, rank in ((head, 2), (final_norm, 1)):
        if name:
            check_rank(reader, name, rank)
    for layer in resolved_layers:
        for role, name in layer.names.items():
            if name:
                check_rank(reader, name, 2 if role in MATRIX_ROLES else 1)
    check_sizes(reader, embed, hidden, vocab, len(resolved_layers))
    first = resolved_layers[0]
    num_heads, num_kv, head_dim = _attention_geometry(reader, spec, cfg, first, hidden)
    eps = config_eps(reader, cfg)
    check_shape(reader, head, (None, hidden), hidden)
    check_shape(reader, final_norm, (hidden,), hidden)
    for layer in resolved_layers:
        _check_shapes(reader, layer, hidden, num_heads * head_dim, num_kv * head_dim, head_dim)
    return ResolvedModel(
        spec=spec,
        prefix=prefix,
        embed=embed,
        head=head,
        final_norm=final_norm,
        layers=resolved_layers,
        hidden_size=hidden,
        vocab_size=vocab,
        num_heads=num_heads,
        num_kv_heads=num_kv,
        head_dim=head_dim,
        norm_eps=eps,
    )


def _attention_geometry(reader, spec: ArchSpec, cfg: dict, layer: LayerTensors, hidden: int) -> tuple[int, int, int]:  # noqa: ANN001
    """Heads, kv heads and head size: from config.json checked against the shapes, from the shapes alone when
    config.json gives no head count. A config that contradicts the shapes is refused with both numbers: a
    silent regrouping of the heads would change the sketches (and an edited config would be a disguise)."""
    keys = ("num_attention_heads", "num_key_value_heads", "head_dim")
    heads, kv_cfg, head_cfg = (config_int(reader, cfg, k) for k in keys)
    if spec.qkv_interleaved:
        rows = int(reader.info(layer["qkv_interleaved"]).shape[0])
        if heads is None:
            heads = max(1, rows // (3 * spec.default_head_dim))
        elif rows % (3 * heads):
            contradiction(reader, f"num_attention_heads {heads}", f"'{layer['qkv_interleaved']}' has {rows} rows, "
                           f"not 3 x {heads} heads x a head size")  # fmt: skip
        return heads, heads, rows // (3 * heads)
    if spec.qkv:
        total = int(reader.info(layer["qkv"]).shape[0])
    else:
        q_rows = int(reader.info(layer["q"]).shape[0])
        kv_rows = int(reader.info(layer["k"]).shape[0])
    head_dim = head_cfg
    if layer["q_norm"]:
        norm = int(reader.info(layer["q_norm"]).shape[0])  # the per-head norm's size is the head size
        if head_cfg is not None and head_cfg != norm:
            contradiction(reader, f"head_dim {head_cfg}", f"the per-head norm '{layer['q_norm']}' has {norm} entries")
        head_dim = norm
    if head_dim is None and heads is None:
        if not spec.qkv and q_rows != kv_rows:
            # Grouped-query attention: which query heads share a key head cannot be read off the shapes,
            # and a guess would change the sketches. Stripping config.json must not be a disguise.
            raise CheckpointError(
                model_location(reader),
                "config.json gives no attention head count (num_attention_heads / head_dim) and the key "
                "projection is narrower than the query (grouped-query attention): restore config.json",
            )
        # No head count at all: the layout's usual head size, else one head of the whole width.
        head_dim = spec.default_head_dim
        if spec.qkv:
            q_rows = head_dim * (hidden // head_dim)
            kv_rows = (total - q_rows) // 2
        if q_rows % head_dim or kv_rows % head_dim or kv_rows <= 0:
            return 1, 1, q_rows if q_rows == kv_rows else min(q_rows, kv_rows)
        if (q_rows // head_dim) % (kv_rows // head_dim):
            return 1, 1, min(q_rows, kv_rows)
        return q_rows // head_dim, kv_rows // head_dim, head_dim
    if head_dim is None:
        width = hidden if spec.qkv else q_rows
        if width % heads:
            what = "the hidden size" if spec.qkv else f"'{layer['q']}'"
            contradiction(reader, f"num_attention_heads {heads}", f"{what} has {width} rows, not a multiple of it")
        head_dim = width // heads
    if spec.qkv:
        q_rows = head_dim * (heads if heads is not None else hidden // head_dim)
        rest = total - q_rows
        if rest <= 0 or rest % (2 * head_dim):
            contradiction(reader, f"{q_rows // head_dim} query heads of head_dim {head_dim} ({q_rows} rows)",
                           f"'{layer['qkv']}' has {total} rows, leaving {rest} for keys and values")  # fmt: skip
        kv_rows = rest // 2
    q_name, k_name = layer["q"] or layer["qkv"], layer["k"] or layer["qkv"]
    if q_rows % head_dim:
        contradiction(reader, f"head_dim {head_dim}", f"'{q_name}' has {q_rows} query rows, not a multiple of it")
    if kv_rows % head_dim or kv_rows <= 0:
        contradiction(reader, f"head_dim {head_dim}", f"'{k_name}' has {kv_rows} key rows, not a multiple of it")
    num_heads, num_kv = q_rows // head_dim, kv_rows // head_dim
    if heads is not None and heads != num_heads:
        contradiction(reader, f"num_attention_heads {heads} x head_dim {head_dim} = {heads * head_dim} query rows",
                       f"'{q_name}' has {q_rows}")  # fmt: skip
    if kv_cfg is not None and kv_cfg != num_kv:
        contradiction(reader, f"num_key_value_heads {kv_cfg} x head_dim {head_dim} = {kv_cfg * head_dim} key rows",
                       f"'{k_name}' has {kv_rows}")  # fmt: skip
    if num_heads % num_kv:
        contradiction(reader, f"{num_heads} query heads", f"{num_kv} key/value heads, which do not divide them")
    return num_heads, num_kv, head_dim


def _mixed_layout(names: set[str], by_prefix: dict[str, dict[int, set[str]]]) -> tuple[str, int, str, str] | None:
    """The first layer of a language model (a prefix with a token embedding) whose layout lineage cannot probe:
    `(prefix, layer, kind, tensor rest)`, or None."""
    embeds = {cand for spec in ARCHITECTURES for cand in spec.embed}
    for prefix, layers in sorted(by_prefix.items()):
        if not any(prefix + cand in names for cand in embeds):
            continue  # a vision tower or other encoder: not the model probed
        for index in sorted(layers):
            for rest in sorted(layers[index]):
                for kind, pattern in _UNSUPPORTED_LAYOUTS:
                    if pattern.search(rest):
                        return prefix, index, kind, rest
    return None


def _check_shapes(reader, layer: LayerTensors, hidden: int, q_rows: int, kv_rows: int, head_dim: int) -> None:  # noqa: ANN001
    """Every tensor of a layer must fit the model's widths: a wrong shape is named with its file, never left
    to fail deep inside a matrix product."""
    ffn = None
    for role in ("gate", "up", "gate_up"):
        if layer[role]:
            rows = int(reader.info(layer[role]).shape[0])
            ffn = rows // 2 if role == "gate_up" else rows
            break
    expected = {
        "q": (q_rows, hidden), "k": (kv_rows, hidden), "v": (kv_rows, hidden),
        "qkv": (q_rows + 2 * kv_rows, hidden), "qkv_interleaved": (q_rows + 2 * kv_rows, hidden),
        "o": (hidden, q_rows), "gate": (ffn, hidden), "up": (ffn, hidden), "gate_up": (2 * (ffn or 0), hidden),
        "down": (hidden, ffn), "attn_norm": (hidden,), "ffn_norm": (hidden,),
        "attn_post_norm": (hidden,), "ffn_post_norm": (hidden,), "q_norm": (head_dim,), "k_norm": (head_dim,),
        "attn_norm_bias": (hidden,), "ffn_norm_bias": (hidden,),
    }  # fmt: skip
    # A bias has one entry per output row of its matrix.
    expected |= {f"{role}_bias": shape[:1] for role, shape in expected.items() if role in MATRIX_ROLES}
    for role, shape in expected.items():
        check_shape(reader, layer[role], shape, hidden)
