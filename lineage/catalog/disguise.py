"""Function-preserving disguises: change every weight a fingerprint might read, keep every output.

A thief who wants a stolen model to look unrelated applies symmetries of the transformer, edits that
leave the computed function unchanged (up to float rounding):

- **FFN neuron permutation** -- reorder the intermediate units: rows of gate/up, columns of down.
- **FFN unit rescaling** -- multiply a unit's ``up`` row by ``c`` and divide its ``down`` column by ``c`` (a
  gated unit is linear in ``up``); with ``signed``, ``c`` is negative half the time, which flips the unit's
  sign: the one disguise of a gated FFN that the weight test's unit group cannot see through.
- **MergeLock-style per-head maps** -- QK: per kv head, an invertible ``A`` on keys and ``A^{-T}`` on every
  query head of its group; to commute with RoPE, ``A`` is, in each rotary plane ``(i, i + head_dim/2)``
  (HF's ``rotate_half`` pairing), a scaled 2-D rotation. VO: per kv head any invertible ``M`` on values
  and ``M^{-1}`` on the matching ``o_proj`` columns of each query head of the group.
- **Norm gain rescaling** -- multiply an RMSNorm's gain by ``alpha`` and divide the columns of the
  projections it feeds by ``alpha``.
- **Residual rotation** -- see `lineage.catalog.rotate`.
- **All at once** (`disguise_all`) -- the FFN permutation, MergeLock maps, norm-gain rescaling and, where the
  layout allows it, the residual rotation, one after the other.

All transforms are computed in float64 and written back in the model's dtype; the tests check that the
logits on real token ids stay within 1e-4 (fp32) of the parent's. Gemma 3 normalises q and k per head
(``q_norm``/``k_norm``) before RoPE, which a rotation inside the head would not commute with; there the
QK map is restricted to per-plane scalings folded into those norms' gains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lineage.catalog import anatomy
from lineage.catalog.anatomy import random_orthogonal
from lineage.catalog.anatomy import write_weight as _write

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _log_uniform(n: int, gen: torch.Generator, low: float = 0.5, high: float = 2.0) -> torch.Tensor:
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.exp(torch.log(torch.tensor(low, dtype=torch.float64)) * (1 - u)
                     + torch.log(torch.tensor(high, dtype=torch.float64)) * u)


@torch.no_grad()
def permute_ffn(model: PreTrainedModel, gen: torch.Generator) -> PreTrainedModel:
    """Permute the FFN units of every layer (in place); returns ``model``."""
    for layer in anatomy.layers(model):
        ffn = anatomy.feed_forward(layer)
        perm = torch.randperm(ffn.gate.shape[0], generator=gen)
        _write(ffn.gate, ffn.gate[perm].clone())
        _write(ffn.up, ffn.up[perm].clone())
        _write(ffn.down, ffn.down[:, perm].clone())
    return model


@torch.no_grad()
def rescale_ffn(model: PreTrainedModel, gen: torch.Generator, *, signed: bool = False) -> PreTrainedModel:
    """Rescale every gated FFN unit (``up`` row times ``c``, ``down`` column over ``c``) in place; returns ``model``."""
    for layer in anatomy.layers(model):
        ffn = anatomy.feed_forward(layer)
        c = _log_uniform(ffn.up.shape[0], gen)
        if signed:
            c = c * (torch.randint(0, 2, c.shape, generator=gen, dtype=torch.float64) * 2 - 1)
        _write(ffn.up, ffn.up.double() * c.unsqueeze(1))
        _write(ffn.down, ffn.down.double() / c.unsqueeze(0))
    return model


def rope_commuting_map(head_dim: int, gen: torch.Generator) -> torch.Tensor:
    """``A`` = in each rotary plane ``(i, i + head_dim/2)`` a rotation by a random angle times a scale."""
    half = head_dim // 2
    angle = torch.rand(half, generator=gen, dtype=torch.float64) * 2 * torch.pi
    scale = _log_uniform(half, gen)
    a = torch.zeros(head_dim, head_dim, dtype=torch.float64)
    idx = torch.arange(half)
    c, s = scale * torch.cos(angle), scale * torch.sin(angle)
    a[idx, idx], a[idx, idx + half] = c, -s
    a[idx + half, idx], a[idx + half, idx + half] = s, c
    return a


def _apply_rows(weight: torch.Tensor, bias: torch.Tensor | None, rows: slice, m: torch.Tensor) -> None:
    _write(weight[rows], m @ weight[rows].double())
    if bias is not None:
        _write(bias[rows], m @ bias[rows].double())


@torch.no_grad()
def mergelock(model: PreTrainedModel, gen: torch.Generator) -> PreTrainedModel:
    """Per-kv-head invertible maps on the QK and VO pairs of every layer (in place); returns ``model``."""
    gemma = anatomy.arch_of(model) == "gemma3"
    for layer in anatomy.layers(model):
        att = anatomy.attention(model, layer)
        hd, group = att.head_dim, att.heads // att.kv_heads
        for g in range(att.kv_heads):
            kv_rows = slice(g * hd, (g + 1) * hd)
            q_heads = [slice(h * hd, (h + 1) * hd) for h in range(g * group, (g + 1) * group)]
            if not gemma:
                a = rope_commuting_map(hd, gen)
                _apply_rows(att.k, att.k_bias, kv_rows, a)
                a_inv_t = torch.linalg.inv(a).T
                for rows in q_heads:
                    _apply_rows(att.q, att.q_bias, rows, a_inv_t)
            # VO: any well-conditioned invertible map (orthogonal * scales * orthogonal).
            m = random_orthogonal(hd, gen) @ torch.diag(_log_uniform(hd, gen)) @ random_orthogonal(hd, gen)
            _apply_rows(att.v, att.v_bias, kv_rows, m)
            m_inv = torch.linalg.inv(m)
            for cols in q_heads:
                _write(att.o[:, cols], att.o[:, cols].double() @ m_inv)
        if gemma:
            _rescale_qk_norms(model, layer, att.head_dim, gen)
    return model


def _rescale_qk_norms(model: PreTrainedModel, layer: torch.nn.Module, head_dim: int, gen: torch.Generator) -> None:
    # q.k is unchanged if q's gain is scaled by s and k's by 1/s; the same s on both dims of a rotary
    # plane keeps the scaling commuting with RoPE. q_norm/k_norm are shared by all heads of a layer.
    half = _log_uniform(head_dim // 2, gen)
    s = torch.cat([half, half])
    attn = layer.self_attn
    anatomy.set_norm_gain(model, attn.q_norm, (anatomy.norm_gain(model, attn.q_norm).double() * s).float())
    anatomy.set_norm_gain(model, attn.k_norm, (anatomy.norm_gain(model, attn.k_norm).double() / s).float())


@torch.no_grad()
def norm_rescale(model: PreTrainedModel, gen: torch.Generator) -> PreTrainedModel:
    """Rescale every norm gain that feeds projections and fold the inverse into them (in place).

    The final norm is rescaled too when ``lm_head`` is not tied to the embedding (folding into a tied head
    would also change the embedding). Gemma's post-norms feed the residual sum and are left alone; its
    ``q_norm``/``k_norm`` pair is rescaled instead.
    """
    for layer in anatomy.layers(model):
        for norm, consumers in anatomy.pre_norms(model, layer):
            _rescale_norm(model, norm, consumers, gen)
        if anatomy.arch_of(model) == "gemma3":
            _rescale_qk_norms(model, layer, anatomy.attention(model, layer).head_dim, gen)
    tied = model.lm_head.weight is model.get_input_embeddings().weight
    if not tied:
        _rescale_norm(model, model.model.norm, [model.lm_head.weight.data], gen)
    return model


def _rescale_norm(model: PreTrainedModel, norm: torch.nn.Module, consumers: list[torch.Tensor],
                  gen: torch.Generator) -> None:
    alpha = _log_uniform(norm.weight.shape[0], gen)
    anatomy.set_norm_gain(model, norm, anatomy.norm_gain(model, norm).double() * alpha)
    for w in consumers:
        _write(w, w.double() / alpha.unsqueeze(0))


@torch.no_grad()
def disguise_all(model: PreTrainedModel, gen: torch.Generator) -> PreTrainedModel:
    """Every disguise at once (in place): FFN permutation, MergeLock, norm rescaling, then a residual rotation
    (skipped for Gemma 3, whose post-norms a rotation cannot keep); returns ``model``."""
    from lineage.catalog import rotate

    model = norm_rescale(mergelock(permute_ffn(model, gen), gen), gen)
    return rotate.rotate_residual(model, gen) if anatomy.arch_of(model) in rotate.ROTATABLE else model
