"""Circuit responses to embedding-anchored probes: what each block *computes*, not how it is stored.

The probes are the model's own normalised token embeddings `E` of the anchor ids. Per layer:
- `qk`: attention scores `sum_h q_h(E) k_h(E)^T` (biases and per-head norms included): unchanged by
  per-head invertible maps of the QK pair (MergeLock) and by head permutations;
- `vo`: the value-output write `o(v(E))` read back on the probes, `o(v(E)) E^T`: unchanged by per-head
  invertible maps of the VO pair;
- `ffn`: the feed-forward block's output read back on the probes: unchanged by neuron permutations and
  by rescaling a neuron's input and output in opposite ways.
Input norm gains are applied as the model applies them, which is the same as folding them into the next
projections; and because probes and read-outs are the model's own embeddings, an orthogonal rotation of
the residual stream (gains folded first) cancels. Weights are fetched one at a time, so at most one
weight matrix is alive on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lineage.arch import LayerTensors, ResolvedModel

Fetch = Callable[[str | None], torch.Tensor | None]


def rms_unit(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rows scaled to unit root-mean-square (an RMSNorm without gain)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        return F.silu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    return F.gelu(x)


class CircuitProbe:
    """Computes the circuit sketches of one model.

    Args:
        model: the resolved layout.
        embed_rows: [P, d] float32 anchor rows of the token embedding, on the device.
    """

    def __init__(self, model: ResolvedModel, embed_rows: torch.Tensor) -> None:
        self.model = model
        self.spec = model.spec
        self.probes = rms_unit(embed_rows, model.norm_eps)  # also the read-out directions

    def _norm(self, x: torch.Tensor, gain: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        eps = self.model.norm_eps
        if self.spec.norm == "layer":
            x = F.layer_norm(x, x.shape[-1:], eps=eps)
        else:
            x = rms_unit(x, eps)
        if gain is not None:
            x = x * (gain + self.spec.gain_offset)
        if bias is not None:
            x = x + bias
        return x

    def embed_sketch(self) -> torch.Tensor:
        """[P, P] cosine Gram of the anchor embeddings."""
        p = self.probes
        return p @ p.T / p.shape[1]

    def head_sketch(self, final_gain: torch.Tensor | None, head_rows: torch.Tensor) -> torch.Tensor:
        """[P, P] logits of the anchor tokens for the (normalised) anchor embeddings."""
        return self._norm(self.probes, final_gain, None) @ head_rows.T / math.sqrt(self.probes.shape[1])

    def layer_sketches(self, layer: LayerTensors, fetch: Fetch) -> dict[str, torch.Tensor]:
        """The [P, P] `qk`, `vo` and `ffn` sketches of one layer.

        Args:
            layer: the layer's tensor names.
            fetch: loads a tensor by name as float32 on the device (None for None); it may also record
                per-tensor responses, so each weight is read exactly once.
        """
        out = self._attention(layer, fetch)
        out["ffn"] = self._ffn(layer, fetch)
        return out

    def _qkv(self, layer: LayerTensors, fetch: Fetch, h: torch.Tensor):  # noqa: ANN202
        m = self.model
        q_rows, kv_rows = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
        if layer["qkv"]:
            y = h @ fetch(layer["qkv"]).T
            b = fetch(layer["qkv_bias"])
            y = y if b is None else y + b
            return y.split([q_rows, kv_rows, kv_rows], dim=1)
        if layer["qkv_interleaved"]:
            y = h @ fetch(layer["qkv_interleaved"]).T
            b = fetch(layer["qkv_interleaved_bias"])
            y = (y if b is None else y + b).view(h.shape[0], m.num_heads, 3, m.head_dim)
            return tuple(y[:, :, i, :].reshape(h.shape[0], -1) for i in range(3))
        outs = []
        for role in ("q", "k", "v"):
            y = h @ fetch(layer[role]).T
            b = fetch(layer[f"{role}_bias"])
            outs.append(y if b is None else y + b)
        return tuple(outs)

    def _attention(self, layer: LayerTensors, fetch: Fetch) -> dict[str, torch.Tensor]:
        m, p = self.model, self.probes
        h = self._norm(p, fetch(layer["attn_norm"]), fetch(layer["attn_norm_bias"]))
        q, k, v = self._qkv(layer, fetch, h)
        n, hd = p.shape[0], m.head_dim
        q = q.reshape(n, m.num_heads, hd)
        k = k.reshape(n, m.num_kv_heads, hd)
        v = v.reshape(n, m.num_kv_heads, hd)
        if layer["q_norm"]:
            q = self._norm(q, fetch(layer["q_norm"]), None)
            k = self._norm(k, fetch(layer["k_norm"]), None)
        group = m.num_heads // m.num_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        qk = torch.einsum("ahd,bhd->ab", q, k) / math.sqrt(hd)
        o = v.reshape(n, -1) @ fetch(layer["o"]).T
        ob = fetch(layer["o_bias"])
        o = o if ob is None else o + ob
        if layer["attn_post_norm"]:
            o = self._norm(o, fetch(layer["attn_post_norm"]), None)
        return {"qk": qk, "vo": o @ p.T / math.sqrt(p.shape[1])}

    def _ffn(self, layer: LayerTensors, fetch: Fetch) -> torch.Tensor:
        p, spec = self.probes, self.spec
        h = self._norm(p, fetch(layer["ffn_norm"]), fetch(layer["ffn_norm_bias"]))
        if layer["gate_up"]:
            gate, up = (h @ fetch(layer["gate_up"]).T).chunk(2, dim=1)
            a = _activation(spec.activation, gate) * up
        elif layer["gate"]:
            a = _activation(spec.activation, h @ fetch(layer["gate"]).T)  # gate first, freed before up
            a = a * (h @ fetch(layer["up"]).T)
        else:
            a = h @ fetch(layer["up"]).T
            b = fetch(layer["up_bias"])
            a = _activation(spec.activation, a if b is None else a + b)
        y = a @ fetch(layer["down"]).T
        b = fetch(layer["down_bias"])
        y = y if b is None else y + b
        if layer["ffn_post_norm"]:
            y = self._norm(y, fetch(layer["ffn_post_norm"]), None)
        return y @ p.T / math.sqrt(p.shape[1])
