"""Width pruning, the Minitron way: residual channels, FFN units (and key-value heads) kept by importance.

NVIDIA's Minitron recipe (Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge
Distillation", arXiv 2407.14679) ranks residual channels, FFN units and heads by activation importance on a
little calibration text, keeps the best of each, sorted by importance, then distils the pruned model from its
parent. `activation_importance` reads the recipe's statistics (the mean magnitude of the normalised residual
that every projection reads, summed over layers, for a residual channel; of the FFN's intermediate activation
for a unit); `width_pruned` cuts a state dict to the kept coordinates in that order. Without measured
importance it falls back on a stand-in read from the weights alone (an embedding column's norm times its
mean input-norm gain; `|up row| |down column|`), which the tests of the width pairing use on models that were
never run. `prune_width` does both on a transformers model; the battery then distils the result
(`lineage.catalog.train.distill_lm`).

The tensor names are Llama's (`model.layers.N.self_attn.q_proj`, `mlp.gate_proj`...), which Qwen2 (with
q/k/v biases) and Gemma 3 (with pre- and post-FFN norms and per-head q/k norms) share; a mixture's 3-D
expert stacks are not cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: The projections that read the residual stream (their columns are residual coordinates).
READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
_HEAD_NORMS = ("self_attn.q_norm", "self_attn.k_norm")  # per head dimension: not residual coordinates


@dataclass(frozen=True)
class Importance:
    """Measured importance: `residual` `[hidden]`, `units` one `[intermediate]` vector per layer."""

    residual: torch.Tensor
    units: tuple[torch.Tensor, ...]


def width_pruned(
    tensors: dict[str, torch.Tensor],
    config: dict,
    width: int,
    units: int,
    layers: list[int] | None = None,
    kv_heads: int | None = None,
    importance: Importance | None = None,
) -> tuple[dict[str, torch.Tensor], dict]:
    """`(tensors, config)` of a Llama-layout model pruned to `width` residual coordinates and `units` FFN units
    per layer (to `layers`, in that order, and to `kv_heads` key-value heads with their query heads, when
    given), each kept by importance and sorted by it.

    Args:
        tensors: the state dict (Llama tensor names; Qwen2's biases and Gemma 3's extra norms are cut too).
        config: the model's config as a dict (`head_dim` is set explicitly in the result, since the heads
            keep their size while the width shrinks).
        width, units: residual coordinates and FFN units kept.
        layers: the layers kept, in order (all by default).
        kv_heads: key-value heads kept (all by default).
        importance: measured importance (`activation_importance`); without it, the weight stand-in: a
            residual coordinate's embedding column norm times its mean input-norm gain, a unit's
            `|up row| |down column|`. A key-value head's is always `|v rows| |o columns of its query heads|`.

    Returns:
        The pruned state dict and config.
    """
    depth = config["num_hidden_layers"]
    layers = list(range(depth)) if layers is None else layers
    embed = tensors["model.embed_tokens.weight"]
    if importance is None:
        gains = torch.stack([tensors[f"model.layers.{i}.input_layernorm.weight"].abs() for i in range(depth)])
        residual = embed.norm(dim=0) * gains.mean(0)
    else:
        residual = importance.residual
    keep = torch.argsort(residual, descending=True)[:width]
    hidden = embed.shape[1]
    out = {"model.embed_tokens.weight": embed[:, keep], "model.norm.weight": tensors["model.norm.weight"][keep]}
    if "lm_head.weight" in tensors:
        out["lm_head.weight"] = tensors["lm_head.weight"][:, keep]
    for new, old in enumerate(layers):
        p, q = f"model.layers.{old}.", f"model.layers.{new}."
        up, down = tensors[p + "mlp.up_proj.weight"], tensors[p + "mlp.down_proj.weight"]
        score = up.norm(dim=1) * down.norm(dim=0) if importance is None else importance.units[old]
        unit = torch.argsort(score, descending=True)[:units]
        kv_rows, q_rows = _heads(tensors, p, config, kv_heads)
        for name, t in tensors.items():
            if not name.startswith(p):
                continue
            rest = name[len(p):]
            module = rest.rsplit(".", 1)[0]
            if module in READERS:
                rows = unit if module.startswith("mlp") else q_rows if module.endswith("q_proj") else kv_rows
                out[q + rest] = t[rows][:, keep] if rest.endswith(".weight") else t[rows]
            elif module == "self_attn.o_proj":
                out[q + rest] = t[keep][:, q_rows] if rest.endswith(".weight") else t[keep]
            elif module == "mlp.down_proj":
                out[q + rest] = t[keep][:, unit] if rest.endswith(".weight") else t[keep]
            elif module.endswith("norm") and module not in _HEAD_NORMS and t.shape == (hidden,):
                out[q + rest] = t[keep]
            else:
                out[q + rest] = t
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    config = dict(config, hidden_size=width, intermediate_size=units, num_hidden_layers=len(layers),
                  head_dim=head_dim)  # fmt: skip
    if config.get("layer_types"):
        config["layer_types"] = [config["layer_types"][i] for i in layers]
    if kv_heads is not None:
        group = config["num_attention_heads"] // config["num_key_value_heads"]
        config |= {"num_key_value_heads": kv_heads, "num_attention_heads": kv_heads * group}
    return {k: v.contiguous() for k, v in out.items()}, config


def _heads(tensors: dict[str, torch.Tensor], p: str, config: dict, kv_heads: int | None) -> tuple:
    """`(k and v rows, q rows and o columns)` kept in layer `p`: every head, or the `kv_heads` most important
    key-value heads (sorted by importance) with the query heads that read them."""
    kv = config["num_key_value_heads"]
    hd = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    group = config["num_attention_heads"] // kv
    v, o = tensors[p + "self_attn.v_proj.weight"], tensors[p + "self_attn.o_proj.weight"]
    importance = v.reshape(kv, -1).norm(dim=1) * o.T.reshape(kv, -1).norm(dim=1)
    kept = torch.argsort(importance, descending=True)[:kv_heads] if kv_heads is not None else torch.arange(kv)
    kv_rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in kept.tolist()])
    q_rows = torch.cat([torch.arange(h * group * hd, (h + 1) * group * hd) for h in kept.tolist()])
    return kv_rows, q_rows


@torch.no_grad()
def activation_importance(model: PreTrainedModel, batches: torch.Tensor) -> Importance:
    """Minitron's activation importance on calibration token windows `batches` `[B, T]`.

    A residual channel's is the mean magnitude of the normalised residual the layers' projections read there
    (the inputs of `q_proj` and `gate_proj`), summed over layers; an FFN unit's, the mean magnitude of its
    intermediate activation (the input of `down_proj`).
    """
    layers = model.model.layers
    residual = torch.zeros(model.config.hidden_size, dtype=torch.float64)
    units = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers]
    hooks = []

    def reads(_module, args) -> None:  # noqa: ANN001
        residual.add_(args[0].detach().abs().double().reshape(-1, residual.numel()).mean(0))

    def unit(i: int):  # noqa: ANN202
        def hook(_module, args) -> None:  # noqa: ANN001
            units[i].add_(args[0].detach().abs().double().reshape(-1, units[i].numel()).mean(0))

        return hook

    for i, layer in enumerate(layers):
        hooks.append(layer.self_attn.q_proj.register_forward_pre_hook(reads))
        hooks.append(layer.mlp.gate_proj.register_forward_pre_hook(reads))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(unit(i)))
    try:
        model.eval()
        model(input_ids=batches)
    finally:
        for h in hooks:
            h.remove()
    return Importance(residual, tuple(units))


def prune_width(model: PreTrainedModel, batches: torch.Tensor, *, residual_keep: float = 0.75,
                ffn_keep: float = 2 / 3) -> PreTrainedModel:
    """A new model of `residual_keep` of the width and `ffn_keep` of the FFN units, kept by activation
    importance on `batches` (every head and layer kept; distil it afterwards, as the recipe does).

    Raises:
        ValueError: a share outside (0, 1), or a layout with expert stacks (no `mlp.down_proj`).
    """
    from transformers import AutoModelForCausalLM

    if not (0 < residual_keep < 1 and 0 < ffn_keep < 1):
        raise ValueError("the shares kept must be in (0, 1)")
    if not all(hasattr(layer.mlp, "down_proj") for layer in model.model.layers):
        raise ValueError(f"width pruning cuts dense FFNs; {model.config.model_type} has none")
    cfg = model.config.to_dict()
    width = round(cfg["hidden_size"] * residual_keep)
    units = round(cfg["intermediate_size"] * ffn_keep)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tensors, config = width_pruned(state, cfg, width, units, importance=activation_importance(model, batches))
    new = AutoModelForCausalLM.from_config(model.config.__class__.from_dict(config), dtype=torch.float32)
    missing, unexpected = new.load_state_dict(tensors, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ValueError(f"width pruning left tensors unmatched: {missing or unexpected}")
    new.eval()
    return new
