"""Match a checkpoint's tensor names to an `ArchSpec`: which tensor plays which role in each layer.

Only names, shapes and config.json are used (no tensor data). The prefix above `layers.{i}.` (or GPT-2's
`h.{i}.`) is found from the names, so text-only and multimodal layouts (`model.`, `language_model.model.`,
`gpt_neox.`, `transformer.`) resolve alike; a vision tower's layers are skipped because they do not carry every
template of the layout (the most complete prefix wins). Of the layouts that read every layer, the one that
gives the most of their tensors a role wins; every other tensor is named with a reason (`ResolvedModel.unread`).
Each routed expert becomes an FFN of its own (`expert.{e}.gate`...), a stacked expert or a Conv1D matrix a
view (`lineage.arch.views`) the reader applies. Once a layout is chosen, every tensor's
dtype, rank and shape and every config value the layout reads are checked (`lineage.arch.checks`), so bad input
fails here, in one line, and never inside a matrix product.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Protocol

from lineage.arch.checks import (
    check_dtypes,
    check_model_type,
    check_rank,
    check_shape,
    check_sizes,
    config_eps,
    model_location,
    text_config,
)
from lineage.arch.geometry import (
    LayerTensors,
    attention_geometry,
    check_latent_shapes,
    check_shapes,
    is_matrix,
    latent_geometry,
)
from lineage.arch.spec import ARCHITECTURES, REFUSED_EMBEDS, REFUSED_LAYERS, ArchSpec
from lineage.arch.views import View, expert_name
from lineage.errors import CheckpointError, UnsupportedArchitectureError

_LAYER_RE = re.compile(r"^(?P<prefix>.*?)(?P<stem>layers|h)\.(?P<index>\d+)\.(?P<rest>.+)$")
_REFUSED = tuple((kind, why, re.compile(pattern)) for kind, why, pattern in REFUSED_LAYERS)


class _NamedShapes(Protocol):
    config: dict

    def names(self) -> list[str]: ...

    def info(self, name: str): ...  # -> object with `.shape`


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
    latent: tuple[int, int, int] | None = None  # multi-head latent attention: (key size without rope, rope, rank)
    views: dict[str, View] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)

    def roles(self) -> dict[str, str]:
        """Every tensor probed, by name: its role (`embed`, `head`, `final_norm`, `layers.{i}.{role}`), with a
        stacked tensor's views standing for it under its own name."""
        out = {n: r for n, r in (
            (self.embed, "embed"), (self.head, "head"), (self.final_norm, "final_norm"),
        ) if n}  # fmt: skip
        for layer in self.layers:
            for role, name in layer.names.items():
                if name:
                    out[name] = f"layers.{layer.index}.{role}"
                    view = self.views.get(name)
                    if view is not None and view.source != name:
                        out.setdefault(view.source, f"layers.{layer.index}.{role.rpartition('.')[0] or role}")
        return out

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


def _bias(template: str | None, rests: set[str]) -> str | None:
    bias = template[: -len("weight")] + "bias" if template and template.endswith("weight") else None
    return bias if bias and bias in rests else None


def _dense_ffn(spec: ArchSpec) -> tuple[str, ...]:
    return tuple(t for t in (spec.gate, spec.up, spec.gate_up, spec.down) if t)


def _expert_count(spec: ArchSpec, rests: set[str]) -> int:
    """How many routed experts a layer holds under `spec` (0: none). A stacked tensor's count is its first
    dimension, read later; here 1 stands for "present"."""
    ex = spec.experts
    if ex is None or ex.router not in rests:
        return 0
    if ex.stacked:
        return int(all(t in rests for t in (ex.gate_up or ex.gate, ex.down)))
    first = ex.gate or ex.up or ex.gate_up
    count = 0
    while all(t.format(e=count) in rests for t in (first, ex.down) if t):
        count += 1
    return count


def _has_attention(spec: ArchSpec, rests: set[str]) -> bool:
    if not all(t in rests for t in _required(spec)):
        return False
    lat = spec.latent
    return not lat or all(t in rests for t in (lat.q_a, lat.q_a_norm, lat.q_b)) or lat.q in rests


def _mixer_only(spec: ArchSpec, rests: set[str]) -> bool:
    """A hybrid's layer whose attention is another mixer (Mamba, a short convolution, linear attention)."""
    if spec.mixer is None or not any(re.search(spec.mixer[0], r) for r in rests):
        return False
    norms = (spec.attn_norm, spec.ffn_norm, *spec.marks)
    return all(t in rests for t in norms if t)


def _layer_ok(spec: ArchSpec, rests: set[str]) -> bool:
    """Whether a layer holds every template of `spec`'s attention (or its mixer, in a hybrid) and norms, and a
    dense FFN or its experts."""
    if not (_has_attention(spec, rests) or _mixer_only(spec, rests)):
        return False
    if all(t in rests for t in _dense_ffn(spec)):
        return True
    ex = spec.experts
    if ex is None:
        return False
    shared = ex.shared is None or ex.shared_optional or all(t in rests for t in ex.shared)
    return _expert_count(spec, rests) > 0 and shared


def _layer_names(
    spec: ArchSpec, rests: set[str], full: str, shapes  # noqa: ANN001 - name -> stored shape
) -> tuple[dict[str, str | None], int, dict[str, View]]:
    """`(role -> full tensor name, expert count, views)` of one layer; `full` is the layer's name prefix."""
    attention = _has_attention(spec, rests)
    roles = {
        "attn_norm": spec.attn_norm, "ffn_norm": spec.ffn_norm, "o": spec.o, "q": spec.q, "k": spec.k, "v": spec.v,
        "qkv": spec.qkv, "qkv_interleaved": spec.qkv_interleaved, "q_norm": spec.q_norm, "k_norm": spec.k_norm,
        "attn_post_norm": spec.attn_post_norm, "ffn_post_norm": spec.ffn_post_norm,
        "attn_sub_norm": spec.attn_sub_norm, "ffn_sub_norm": spec.ffn_sub_norm,
    }  # fmt: skip
    roles |= {f"act.{i}": t for i, t in enumerate(spec.activation_params)}
    if spec.latent:
        lat = spec.latent
        roles |= {"kv_a": lat.kv_a, "kv_a_norm": lat.kv_a_norm, "kv_b": lat.kv_b, "q_a": lat.q_a,
                  "q_a_norm": lat.q_a_norm, "q_b": lat.q_b, "q": lat.q}  # fmt: skip
    if all(t in rests for t in _dense_ffn(spec)):
        roles |= {"gate": spec.gate, "up": spec.up, "gate_up": spec.gate_up, "down": spec.down}
    if not attention:  # a hybrid's mixer layer: its norms and FFN only
        keep = ("attn_norm", "ffn_norm", "ffn_post_norm", "ffn_sub_norm", "gate", "up", "gate_up", "down")
        roles = {r: t for r, t in roles.items() if r in keep or r.startswith("act.")}
    out: dict[str, str | None] = {role: (t if t and t in rests else None) for role, t in roles.items()}
    for role in ("q", "k", "v", "qkv", "qkv_interleaved", "o", "up", "down", "gate_up", "gate"):
        out[f"{role}_bias"] = _bias(roles.get(role), rests) if role in roles else None
        out.setdefault(role, None)
    for role in ("attn_norm", "ffn_norm"):  # LayerNorm biases (GPT-NeoX)
        out[f"{role}_bias"] = _bias(roles[role], rests)
    views: dict[str, View] = {}
    count = _expert_count(spec, rests)
    ex = spec.experts
    if count:
        out |= {"router": ex.router, "router_bias": ex.router_bias if ex.router_bias in rests else None}
        if ex.shared and all(t in rests for t in ex.shared):
            out |= {f"shared.{r}": t for r, t in zip(("gate", "up", "down"), ex.shared)}
            out |= {f"shared.{r}_bias": _bias(t, rests) for r, t in zip(("gate", "up", "down"), ex.shared)}
        if ex.shared_router:
            out["shared_router"] = ex.shared_router if ex.shared_router in rests else None
        if ex.stacked:
            count = int(shapes(full + ex.down)[0])
            for e in range(count):
                for role, t, inter in (("gate_up", ex.gate_up, ex.interleaved), ("gate", ex.gate, False),
                                       ("up", ex.up, False), ("down", ex.down, False),
                                       ("gate_up_bias", ex.gate_up_bias, ex.interleaved),
                                       ("down_bias", ex.down_bias, False)):  # fmt: skip
                    if t and t in rests:
                        name = expert_name(full + t, e)
                        views[name] = View(full + t, e, ex.transposed and not role.endswith("bias"), inter)
                        out[f"expert.{e}.{role}"] = name
        else:
            for e in range(count):
                for role, t in (("gate", ex.gate), ("up", ex.up), ("gate_up", ex.gate_up), ("down", ex.down)):
                    if t:
                        out[f"expert.{e}.{role}"] = t.format(e=e)
                        out[f"expert.{e}.{role}_bias"] = _bias(t.format(e=e), rests)
    named = {role: (t if t is None or t.startswith(full) or t in views else full + t) for role, t in out.items()}
    for t in spec.transposed:
        if full + t in named.values():
            views[full + t] = View(full + t, transpose=True)
    return named, count, views


def _required(spec: ArchSpec) -> tuple[str, ...]:
    # Every template the layout names must be there: Gemma 3's extra norms tell it from Llama.
    templates = (
        spec.q, spec.k, spec.v, spec.qkv, spec.qkv_interleaved, spec.o, spec.attn_norm, spec.ffn_norm,
        spec.q_norm, spec.k_norm, spec.attn_post_norm, spec.ffn_post_norm, spec.attn_sub_norm, spec.ffn_sub_norm,
        *spec.marks, *spec.activation_params,
    )  # fmt: skip
    if spec.latent:
        templates += (spec.latent.kv_a, spec.latent.kv_a_norm, spec.latent.kv_b)
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
    by_prefix: dict[tuple[str, str], dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name in names:
        m = _LAYER_RE.match(name)
        if m:
            by_prefix[(m["prefix"], m["stem"])][int(m["index"])].add(m["rest"])
    scaled = sorted(n for n in names if n.endswith(("weight_scale", "weight_scale_inv")))
    if scaled:
        raise CheckpointError(
            model_location(reader),
            f"block-scaled (FP8) weights such as '{scaled[0]}': lineage reads weights without their scales; "
            "dequantize the checkpoint to BF16 first",
        )
    cfg = text_config(reader)
    model_type = cfg.get("model_type")
    # Every layout that reads the layers is a candidate; the one that gives the most of their tensors a role
    # wins (ties: the table's order), so a layout whose names are a subset of another's never shadows it.
    best, truncated = None, None
    for spec in ARCHITECTURES:
        found = _match(reader, spec, names, by_prefix, model_type)
        if found is None:
            continue
        prefix, stem, embed, layers, indices, score = found
        if len(indices) < len(layers):
            truncated = truncated if truncated and truncated[0] >= score else (score, spec, layers, indices)
        elif best is None or score > best[0]:
            best = (score, spec, prefix, stem, embed, {i: layers[i] for i in indices})
    if truncated and (best is None or truncated[0] > best[0]):
        _refuse_layers(reader, names, by_prefix)
        _, spec, layers, indices = truncated
        broken = sorted(set(layers) - set(indices))
        required = (*_required(spec), *_dense_ffn(spec))
        missing = sorted(t for t in required if t not in layers[broken[0]])
        raise CheckpointError(
            model_location(reader),
            f"layer {broken[0]} lacks {', '.join(missing)} ({len(broken)} incomplete layer(s)): "
            "a shard is missing or the checkpoint is truncated",
        )
    if best is None:
        _refuse_layers(reader, names, by_prefix)
        raise UnsupportedArchitectureError(
            f"{model_location(reader)}: tensor names match no known layout "
            f"({', '.join(s.name for s in ARCHITECTURES)}); lineage cannot probe this architecture"
        )
    _, spec, prefix, stem, embed, layers = best
    _check_numbering(reader, f"{prefix}{stem}.", sorted(layers))
    check_model_type(reader, spec, model_type)
    for key, value, what in spec.refuse:
        if cfg.get(key, not value) == value:
            raise UnsupportedArchitectureError(
                f"{model_location(reader)}: {what} is not supported ({key} is {value!r} in the config)"
            )
    return _build(reader, spec, prefix, embed, layers, names)


def _match(reader, spec: ArchSpec, names: set[str], by_prefix: dict, model_type: str | None):  # noqa: ANN001, ANN202
    """`(prefix, stem, embed, layers, indices of the layers it reads, coverage)` of the first prefix whose layers
    `spec` reads, or None. Coverage is the share of those layers' tensors that get a role (or a named reason to
    be left unread)."""
    if spec.model_types and model_type not in spec.model_types:
        return None
    # Most layers first; ties broken by name, so the choice never depends on set order.
    for (prefix, stem), layers in sorted(by_prefix.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if stem != spec.stem:
            continue
        embed = _find(names, spec.embed, prefix)
        if embed is None or len(reader.info(embed).shape) != 2:
            continue
        indices = sorted(i for i, rests in layers.items() if _layer_ok(spec, rests))
        if not indices or (spec.experts and not any(_expert_count(spec, layers[i]) for i in indices)):
            continue
        if spec.mixer and spec.mixer[2] and not any(_mixer_only(spec, layers[i]) for i in indices):
            continue  # a hybrid's layout reads a model with its other mixer only
        covered = total = 0
        unread = {t for t, _ in spec.unread}
        for i in indices:
            full = f"{prefix}{stem}.{i}."
            roles, _, views = _layer_names(spec, layers[i], full, lambda n: reader.info(n).shape)
            probed = {views[n].source if n in views else n for n in roles.values() if n}
            for rest in layers[i]:
                total += 1
                covered += (full + rest in probed or rest in unread
                            or bool(spec.mixer and re.search(spec.mixer[0], rest)))  # fmt: skip
        return prefix, stem, embed, layers, indices, covered / max(1, total)
    return None


class _Viewed:
    """`reader` with the logical shapes of `views` (names and shapes only: the checks read no tensor)."""

    def __init__(self, reader, views: dict[str, View]) -> None:  # noqa: ANN001
        self._reader, self._views = reader, views

    def info(self, name: str):  # noqa: ANN201
        view = self._views.get(name)
        if view is None:
            return self._reader.info(name)
        src = self._reader.info(view.source)
        return replace(src, name=name, shape=view.shape(tuple(src.shape)))

    def file_of(self, name: str):  # noqa: ANN201
        view = self._views.get(name)
        return self._reader.file_of(view.source if view else name)

    def __getattr__(self, attr: str):  # noqa: ANN204
        return getattr(self._reader, attr)


def _check_numbering(reader, prefix: str, indices: list[int]) -> None:  # noqa: ANN001
    """Layers are numbered 0, 1, ... without a gap: a gap is a lost shard or a corrupt name, and a layer index
    such as 99999999999 must not be taken for a model of that depth."""
    if indices == list(range(len(indices))):
        return
    missing = next(i for i in range(len(indices)) if i != indices[i])
    shown = ", ".join(str(i) for i in indices[:8]) + (", ..." if len(indices) > 8 else "")
    raise CheckpointError(
        model_location(reader),
        f"the layers under '{prefix}' are numbered {shown}, not 0 to {len(indices) - 1} "
        f"(layer {missing} is missing): a shard is missing or the tensor names are corrupt",
    )


def _build(reader, spec, prefix, embed, layers, names) -> ResolvedModel:  # noqa: ANN001
    vocab, hidden = (int(x) for x in reader.info(embed).shape)
    head = _find(names, spec.head, prefix)
    head = head if head != embed else None
    final_norm = _find(names, spec.final_norm, prefix) if spec.final_norm else None
    final_bias = final_norm[: -len("weight")] + "bias" if final_norm and final_norm.endswith("weight") else None
    final_bias = final_bias if final_bias in names else None
    cfg = text_config(reader)
    views: dict[str, View] = {}
    built = []
    for i, rests in sorted(layers.items()):
        full = f"{prefix}{spec.stem}.{i}."
        roles, count, layer_views = _layer_names(spec, rests, full, lambda n: reader.info(n).shape)
        views |= layer_views
        built.append(LayerTensors(i, roles, count))
    resolved_layers = tuple(built)
    reader = _Viewed(reader, views) if views else reader
    # Header facts first (dtypes, ranks), so that nothing below indexes a shape that is not there.
    check_dtypes(reader, [n for n in (embed, head, final_norm) if n] + [
        n for lt in resolved_layers for n in lt.names.values() if n
    ])  # fmt: skip
    for name, rank in ((head, 2), (final_norm, 1)):
        if name:
            check_rank(reader, name, rank)
    for layer in resolved_layers:
        for role, name in layer.names.items():
            if name and not role.startswith("act."):  # an activation's parameters may be scalars
                check_rank(reader, name, 2 if is_matrix(role) else 1)
    check_sizes(reader, embed, hidden, vocab, len(resolved_layers))
    first = next(lt for lt in resolved_layers if lt["o"])
    latent = None
    if spec.latent:
        num_heads, num_kv, head_dim, latent = latent_geometry(reader, cfg, first)
    else:
        num_heads, num_kv, head_dim = attention_geometry(reader, spec, cfg, first, hidden)
    eps = config_eps(reader, cfg)
    check_shape(reader, head, (None, hidden), hidden)
    check_shape(reader, final_norm, (hidden,), hidden)
    for layer in resolved_layers:
        if not layer["o"]:
            check_shapes(reader, None, layer, hidden, 0, 0, 0, attention=False)
        elif latent:
            check_latent_shapes(reader, layer, hidden, num_heads, head_dim, latent)
        else:
            check_shapes(reader, spec, layer, hidden, num_heads * head_dim, num_kv * head_dim, head_dim)
    probed = {n for lt in resolved_layers for n in lt.names.values() if n}
    # The head sketch reads the probes through the final gain alone (as every fingerprint before it did).
    unread = {final_bias: "the final LayerNorm's bias (a shift every token shares)"} if final_bias else {}
    if spec.mixer:
        stem = f"{prefix}{spec.stem}."
        unread |= {n: spec.mixer[1] for n in names if n.startswith(stem) and
                   re.search(spec.mixer[0], n[len(stem):].partition(".")[2]) and n not in probed}  # fmt: skip
    for template, why in spec.unread:
        unread |= {n: why for n in names if n == prefix + template or n.endswith("." + template) or n == template}
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
        latent=latent,
        views=views,
        unread=unread,
    )


def _refuse_layers(reader, names: set[str], by_prefix: dict) -> None:  # noqa: ANN001
    """Raise, naming the kind of layer, when a layer no layout reads is of a kind lineage does not probe."""
    refused = _refused_layer(names, by_prefix)
    if refused is not None:
        prefix, index, kind, why, rest = refused
        raise UnsupportedArchitectureError(
            f"{model_location(reader)}: layer {index}: {kind} layout is not supported "
            f"('{prefix}{index}.{rest}'): {why}"
        )


def _refused_layer(
    names: set[str], by_prefix: dict[tuple[str, str], dict[int, set[str]]]
) -> tuple[str, int, str, str, str] | None:
    """The first layer of a language model (a prefix with a token embedding) of a kind lineage does not probe
    (`lineage.arch.spec.REFUSED_LAYERS`): `(prefix.stem., layer, kind, why, tensor rest)`, or None."""
    embeds = {cand for spec in ARCHITECTURES for cand in spec.embed} | set(REFUSED_EMBEDS)
    for (prefix, stem), layers in sorted(by_prefix.items()):
        if not any(prefix + cand in names for cand in embeds):
            continue  # a vision tower or other encoder: not the model probed
        for index in sorted(layers):
            for rest in sorted(layers[index]):
                for kind, why, pattern in _REFUSED:
                    if pattern.search(rest):
                        return f"{prefix}{stem}.", index, kind, why, rest
    return None
