"""Orthogonal rotation of the residual stream (the SliceGPT / QuaRot symmetry), used as a disguise.

With row vectors, the residual ``h`` becomes ``h Q`` for a random orthogonal ``Q``. RMSNorm commutes
with ``Q`` only once its gain is 1 (``rms(h Q) = rms(h)``, but a per-dimension gain does not commute
with a rotation), so every gain is first folded into the projections it feeds and set to 1:

1. untie ``lm_head`` from the embedding if needed (they now differ by the final norm's gain);
2. fold each input / post-attention norm gain into the columns of q, k, v / gate, up, and the final
   norm's gain into ``lm_head``;
3. ``E <- E Q``; every projection that reads the residual ``W <- W Q``; every projection that writes
   it (``o_proj``, ``down_proj``) ``W <- Q^T W``.

Biases of the readers (Qwen2's q/k/v) are unaffected: they act after the projection. Gemma 3 cannot be
rotated this way: its post-attention and post-FFN norms apply a per-dimension gain to what is *added*
to the residual, which neither folds into a linear layer nor commutes with ``Q``; the function refuses
Gemma rather than produce a model that only looks like a disguise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lineage.catalog import anatomy
from lineage.catalog.anatomy import random_orthogonal
from lineage.catalog.anatomy import write_weight as _write

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ROTATABLE = ("llama", "mistral", "qwen2", "phi3")


@torch.no_grad()
def fold_norms(model: PreTrainedModel) -> PreTrainedModel:
    """Fold every RMSNorm gain into the projections it feeds and set the gains to 1 (in place)."""
    anatomy.untie_lm_head(model)
    for layer in anatomy.layers(model):
        for norm, consumers in anatomy.pre_norms(model, layer):
            gain = anatomy.norm_gain(model, norm).double()
            for w in consumers:
                _write(w, w.double() * gain.unsqueeze(0))
            anatomy.set_norm_gain(model, norm, torch.ones_like(gain))
    final = model.model.norm
    gain = anatomy.norm_gain(model, final).double()
    _write(model.lm_head.weight.data, model.lm_head.weight.data.double() * gain.unsqueeze(0))
    anatomy.set_norm_gain(model, final, torch.ones_like(gain))
    return model


@torch.no_grad()
def rotate_residual(model: PreTrainedModel, gen: torch.Generator) -> PreTrainedModel:
    """Fold the norms, then rotate the residual stream by a random orthogonal matrix (in place).

    Args:
        model: a Llama, Mistral, Qwen2 or Phi-3 model.
        gen: draws the rotation.

    Returns:
        ``model``, computing the same logits.

    Raises:
        ValueError: for architectures where the rotation cannot preserve the function (Gemma 3).
    """
    arch = anatomy.arch_of(model)
    if arch not in ROTATABLE:
        raise ValueError(f"residual rotation cannot preserve a {arch} model's function (post-norms); "
                         f"use it on {', '.join(ROTATABLE)}")
    fold_norms(model)
    q = random_orthogonal(model.config.hidden_size, gen)
    emb = model.get_input_embeddings().weight.data
    _write(emb, emb.double() @ q)
    for layer in anatomy.layers(model):
        for w in anatomy.attention_inputs(layer) + anatomy.ffn_inputs(layer):
            _write(w, w.double() @ q)
        for w in anatomy.residual_writers(layer):
            _write(w, q.T @ w.double())
    lm = model.lm_head.weight.data
    _write(lm, lm.double() @ q)
    return model
