"""Weight operations that are not training: quantisation, pruning, vocabulary extension, layer removal,
depth pruning and up-scaling, abliteration. Each takes a model (and what else it needs) and returns the edited model.

They mirror what the hub does to released checkpoints: group-wise int8/int4 quantisation published as a
dequantised round trip, unstructured magnitude pruning, tokenizer extension with resized embeddings,
depth pruning, and "abliteration" (projecting a behaviour direction out of every residual write).
Embeddings and the LM head are left unquantised and unpruned, as GPTQ/AWQ-style tools do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lineage.catalog import anatomy

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast


def _projection_weights(model: PreTrainedModel) -> list[torch.Tensor]:
    """The weights of every linear layer inside the decoder blocks (not embeddings, not lm_head), and each
    expert's matrix of a stack of experts (transformers keeps a mixture's experts as 3-D parameters)."""
    linear = [mod.weight.data for name, mod in model.named_modules()
              if isinstance(mod, torch.nn.Linear) and ".layers." in f".{name}"]  # fmt: skip
    stacked = [p.data[e] for name, p in model.named_parameters()
               if p.dim() == 3 and ".layers." in f".{name}" for e in range(p.shape[0])]  # fmt: skip
    return linear + stacked


def quantize_groupwise(w: torch.Tensor, *, bits: int, group_size: int) -> torch.Tensor:
    """Symmetric absmax quantisation per group of ``group_size`` input columns, then dequantisation.

    Each row is cut into groups along the input dimension; a group's scale is ``absmax / (2^(bits-1) - 1)``
    and its values are rounded to integers in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``.
    """
    rows, cols = w.shape
    pad = (-cols) % group_size
    x = torch.nn.functional.pad(w.float(), (0, pad)).view(rows, -1, group_size)
    qmax = 2 ** (bits - 1) - 1
    scale = x.abs().amax(dim=-1, keepdim=True) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(x / scale), -qmax, qmax)
    return (q * scale).view(rows, -1)[:, :cols].to(w.dtype)


@torch.no_grad()
def quantize(model: PreTrainedModel, *, bits: int, group_size: int = 32) -> PreTrainedModel:
    """Round-trip every decoder projection through ``bits``-bit group-wise quantisation (in place)."""
    for w in _projection_weights(model):
        w.copy_(quantize_groupwise(w, bits=bits, group_size=group_size))
    return model


@torch.no_grad()
def prune_magnitude(model: PreTrainedModel, *, sparsity: float = 0.3) -> PreTrainedModel:
    """Zero the ``sparsity`` fraction of smallest-magnitude entries of each decoder projection (in place)."""
    if not 0.0 < sparsity < 1.0:
        raise ValueError("sparsity must be in (0, 1)")
    for w in _projection_weights(model):
        k = int(sparsity * w.numel())
        if k:
            threshold = w.abs().flatten().kthvalue(k).values
            w.masked_fill_(w.abs() <= threshold, 0.0)
    return model


def extend_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, new_tokens: list[str],
                      *, seed: int) -> tuple[PreTrainedModel, int]:
    """Add tokens to the tokenizer and grow the embedding (and an untied head) to match.

    Models pad their embedding beyond the tokenizer (as Llama 3 reserves special tokens); the gap is first
    filled with reserved tokens so the new tokens get ids past the old embedding, as in a real extension.
    New rows are initialised by transformers' mean resizing (mean and covariance of the old rows), which
    samples from the global generator, hence the seed.

    Returns:
        The resized model and the number of tokens added.
    """
    old_vocab = model.get_input_embeddings().weight.shape[0]
    reserved = [f"<|reserved_{i}|>" for i in range(max(0, old_vocab - len(tokenizer)))]
    if reserved:
        tokenizer.add_special_tokens({"additional_special_tokens": reserved})
    vocab = tokenizer.get_vocab()
    fresh = [t for t in dict.fromkeys(new_tokens) if t not in vocab]
    tokenizer.add_tokens(fresh)
    torch.manual_seed(seed)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return model, len(fresh)


def remove_layer(model: PreTrainedModel, index: int) -> PreTrainedModel:
    """A new model with decoder layer ``index`` removed (config and tensor names renumbered)."""
    n = model.config.num_hidden_layers
    if n < 2 or not 0 <= index < n:
        raise ValueError(f"cannot remove layer {index} of a {n}-layer model")
    return select_layers(model, [i for i in range(n) if i != index])


def prune_depth(model: PreTrainedModel, *, drop: float = 0.25) -> PreTrainedModel:
    """A new model without the middle ``drop`` share of its layers (ShortGPT-style depth pruning)."""
    n = model.config.num_hidden_layers
    k = max(1, round(n * drop))
    if not 0.0 < drop < 1.0 or k >= n:
        raise ValueError(f"cannot drop {drop:.0%} of {n} layers")
    start = (n - k) // 2
    return select_layers(model, [i for i in range(n) if not start <= i < start + k])


def upscale_depth(model: PreTrainedModel) -> PreTrainedModel:
    """A new model of 4/3 the depth, SOLAR-style: the first two thirds of the layers, then the last two thirds."""
    n = model.config.num_hidden_layers
    return select_layers(model, [*range(0, 2 * n // 3), *range(n // 3, n)])


def select_layers(model: PreTrainedModel, order: list[int]) -> PreTrainedModel:
    """A new model whose decoder layers are the given layers of ``model``, in that order.

    Layer surgery as on the hub: depth pruning drops layers (ShortGPT, LaCo), and depth up-scaling repeats
    them (SOLAR-10.7B is Mistral-7B's layers 0-23 followed by 8-31; mergekit's ``passthrough`` builds such
    stacks from slices).
    """
    from transformers import AutoModelForCausalLM

    n = model.config.num_hidden_layers
    if not order or any(not 0 <= i < n for i in order):
        raise ValueError(f"layers {order} are not all among the {n} layers of the model")
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_hidden_layers = len(order)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in order]
    prefix = "model.layers."
    state, layers = {}, {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            i, rest = name[len(prefix):].split(".", 1)
            layers.setdefault(int(i), {})[rest] = tensor
        else:
            state[name] = tensor
    for new_index, old_index in enumerate(order):
        state.update({f"{prefix}{new_index}.{rest}": t.clone() for rest, t in layers[old_index].items()})
    new = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    new.load_state_dict(state, strict=True)
    new.eval()
    return new


@torch.no_grad()
def mean_residual(model: PreTrainedModel, batch: torch.Tensor, layer: int) -> torch.Tensor:
    """Mean residual-stream vector after decoder layer ``layer`` over all positions of ``batch``."""
    out = model(input_ids=batch, output_hidden_states=True)
    return out.hidden_states[layer + 1].double().mean(dim=(0, 1))


@torch.no_grad()
def abliterate(model: PreTrainedModel, direction: torch.Tensor) -> PreTrainedModel:
    """Project ``direction`` out of the embedding and of every residual write (in place).

    With ``r`` the unit direction, embedding rows become ``e - (e . r) r`` and each ``o_proj``/``down_proj``
    becomes ``(I - r r^T) W``, so no layer can write along ``r`` any more. (On Gemma 3 the post-norms
    rescale the writes afterwards, so the direction is damped rather than removed -- as in practice.)
    """
    r = direction.double() / direction.double().norm()
    emb = model.get_input_embeddings().weight.data
    emb.copy_((emb.double() - (emb.double() @ r).unsqueeze(1) * r.unsqueeze(0)).to(emb.dtype))
    for layer in anatomy.layers(model):
        for w in anatomy.residual_writers(layer):
            w.copy_((w.double() - r.unsqueeze(1) * (r @ w.double()).unsqueeze(0)).to(w.dtype))
    return model
