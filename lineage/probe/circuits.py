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
the residual stream (gains folded first) cancels. Weights are streamed one at a time, so at most one
block of one weight matrix is alive on the device.

The same products give the weight test its sign-carrying responses (`lineage.probe.identity`): what the
value-output path and the FFN write to the residual stream for each anchor, at the kept residual
coordinates, and each unit's profile on the anchor mixtures, appended to the probes as extra rows (the
writers' profiles read back from their output side in the same pass). A few seeded residual vectors ride in
the same products as the probes (`lineage.probe.identity.seeded_inputs`): what each block writes for them at
the read coordinates is the weight test's one response that does not start from the model's embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from lineage.arch import LayerTensors, ResolvedModel
from lineage.probe.identity import DENSE_FFN, SHARED_EXPERT, UNIT_SAMPLE, profiled_units
from lineage.probe.profiles import Profiles


class Weights(Protocol):
    """Where circuits get weights from: products with a matrix, and small vectors (gains, biases)."""

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of the tensor `name`."""
        ...

    def matmul(self, name: str, inputs: torch.Tensor) -> torch.Tensor:
        """`inputs @ W.T` for the 2-D tensor `name`, streamed in row blocks."""
        ...

    def vector(self, name: str | None) -> torch.Tensor | None:
        """A 1-D tensor on the device, or None for None."""
        ...

    def matmul_profiled(
        self, name: str, inputs: torch.Tensor, profiles: Profiles
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(inputs @ W.T, the unit profiles)` for the 2-D tensor `name`, in one streamed pass."""
        ...


@dataclass
class LayerProbe:
    """What one layer gives: its `[P, P]` sketches and its sign-carrying identity responses.

    Attributes:
        sketches: `qk`, `vo`, `ffn`.
        identity: `resid_vo`, `resid_ffn` `[P, C]`; `seeded_vo`, `seeded_ffn` `[K, R]`; `v`, `o` `[kv_dim, M]`;
            for a gated FFN `gate`, `up`, `down` `[U, M]` (see `lineage.probe.identity`).
    """

    sketches: dict[str, torch.Tensor] = field(default_factory=dict)
    identity: dict[str, torch.Tensor] = field(default_factory=dict)


def rms_unit(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rows scaled to unit root-mean-square (an RMSNorm without gain)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


#: gpt-oss's SwiGLU: `(clamp(up) + 1) * g * sigmoid(1.702 g)` with `g = min(gate, 7)` (transformers' GptOssExperts).
_OSS_ALPHA, _OSS_LIMIT = 1.702, 7.0


def _activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        return F.silu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "relu2":
        return F.relu(x).square()
    return F.gelu(x)


def _xielu(x: torch.Tensor, alpha_p: torch.Tensor, alpha_n: torch.Tensor, beta: torch.Tensor,
           eps: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """xIELU (Apertus; transformers' `XIELUActivation`) with its learned parameters."""
    a_p, a_n = F.softplus(alpha_p), beta + F.softplus(alpha_n)
    return torch.where(x > 0, a_p * x * x + beta * x, (torch.expm1(torch.minimum(x, eps)) - x) * a_n + beta * x)


def _gated(name: str, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """A gated FFN's hidden units: `act(gate) * up`, or gpt-oss's clamped form."""
    if name == "swiglu_oss":
        g = gate.clamp(max=_OSS_LIMIT)
        return (up.clamp(-_OSS_LIMIT, _OSS_LIMIT) + 1) * g * torch.sigmoid(_OSS_ALPHA * g)
    return _activation(name, gate) * up


class CircuitProbe:
    """Computes the circuit sketches and identity responses of one model.

    Args:
        model: the resolved layout.
        embed_rows: [P, d] float32 anchor rows of the token embedding, on the device.
        mixing: [P, M] weights of the anchor mixtures (`lineage.probe.identity.mixing_weights`), on the device.
        coordinates: residual coordinates kept (int64, on the device).
        seeded: `[K, d]` seeded residual inputs, zero at `read` (`lineage.probe.identity.seeded_inputs`).
        read: the residual coordinates their writes are kept at (int64, on the device).
        frame: `[F, d]` the weight frame's directions (`lineage.probe.frame`), on the device, or None: FFN units
            are profiled on them as well (`frame_gate`, `frame_up`, `frame_down`).
    """

    def __init__(self, model: ResolvedModel, embed_rows: torch.Tensor, mixing: torch.Tensor,
                 coordinates: torch.Tensor, seeded: torch.Tensor, read: torch.Tensor,
                 frame: torch.Tensor | None = None) -> None:  # fmt: skip
        self.model = model
        self.spec = model.spec
        self.probes = rms_unit(embed_rows, model.norm_eps)  # also the read-out directions
        self.mixtures = rms_unit(mixing.T @ self.probes, model.norm_eps)  # [M, d]
        self.frame = frame if frame is not None else self.mixtures[:0]
        # What FFN units are profiled on: the mixtures, then the frame (its directions, scaled like the mixtures).
        self.unit_vectors = torch.cat([self.mixtures, rms_unit(self.frame, model.norm_eps)])
        # Every reader meets probes, mixtures, frame and seeded inputs in one product.
        self.inputs = torch.cat([self.probes, self.unit_vectors, seeded])
        self.coordinates = coordinates
        self.read = read

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(probes then seeded inputs, mixtures then frame)`: the rows of `h` (normed `inputs`) a block computes
        on, and the rows only unit profiles are read on."""
        n, end = self.probes.shape[0], self.probes.shape[0] + self.unit_vectors.shape[0]
        return torch.cat([h[:n], h[end:]]), h[n:end]

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

    def unembed_sketch(self, final_gain: torch.Tensor | None, head_rows: torch.Tensor) -> torch.Tensor:
        """[P, P] cosine Gram of the anchor tokens' output embeddings, final norm gain applied.

        The output embedding is what a family's tokenizer and data shape most directly (every training step
        moves it), so it is the part of the fingerprint that sizes of one family share; applying the gain
        makes it the same whether or not a thief folded the gain into the head.
        """
        h = head_rows if final_gain is None else head_rows * (final_gain + self.spec.gain_offset)
        h = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return h @ h.T

    def head_sketch(self, final_gain: torch.Tensor | None, head_rows: torch.Tensor) -> torch.Tensor:
        """[P, P] logits of the anchor tokens for the (normalised) anchor embeddings."""
        return self._norm(self.probes, final_gain, None) @ head_rows.T / math.sqrt(self.probes.shape[1])

    def layer(self, layer: LayerTensors, w: Weights) -> LayerProbe:
        """The sketches and identity responses of one layer.

        Args:
            layer: the layer's tensor names.
            w: the weights; its `matmul` may also record per-tensor responses, so each matrix is read once.
        """
        out = LayerProbe()
        if layer["o"]:
            self._attention(layer, w, out)
        else:  # a hybrid's Mamba, convolution or linear-attention layer: no attention to probe
            zero = self.probes.new_zeros(self.probes.shape[0], self.probes.shape[0])
            out.sketches |= {"qk": zero, "vo": zero}
        self._ffn(layer, w, out)
        return out

    @staticmethod
    def _affine(w: Weights, weight: str, bias: str | None, x: torch.Tensor, mixtures: torch.Tensor | None = None,
                units: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """`(x W^T + b, the profiles of the units on the mixtures)`; no profiles without mixtures."""
        if mixtures is None:
            y, prof = w.matmul(weight, x), None
        else:
            y, prof = w.matmul_profiled(weight, x, Profiles(mixtures, "in", units))
        b = w.vector(bias)
        if b is None:
            return y, prof
        return y + b, (None if prof is None else prof + (b if units is None else b[units]))

    def _qkv(self, layer: LayerTensors, w: Weights, h: torch.Tensor, mix: torch.Tensor):  # noqa: ANN202
        """`(q, k, v)` of the probes and the value dimensions' profiles on the mixtures `[M, kv_dim]`."""
        m, n = self.model, h.shape[0]
        q_rows, kv_rows = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
        if layer["qkv"]:
            v_rows = torch.arange(q_rows + kv_rows, q_rows + 2 * kv_rows, device=h.device)
            y, prof = self._affine(w, layer["qkv"], layer["qkv_bias"], h, mix, v_rows)
            return (*y.split([q_rows, kv_rows, kv_rows], dim=1), prof)
        if layer["qkv_interleaved"]:  # rows per head: q, k, v of head_dim each
            heads = torch.arange(m.num_heads, device=h.device)[:, None] * (3 * m.head_dim)
            v_rows = (heads + 2 * m.head_dim + torch.arange(m.head_dim, device=h.device)).reshape(-1)
            y, prof = self._affine(w, layer["qkv_interleaved"], layer["qkv_interleaved_bias"], h, mix, v_rows)
            y = y.view(n, m.num_heads, 3, m.head_dim)
            return (*(y[:, :, i, :].reshape(n, -1) for i in range(3)), prof)
        q, _ = self._affine(w, layer["q"], layer["q_bias"], h)
        k, _ = self._affine(w, layer["k"], layer["k_bias"], h)
        v, prof = self._affine(w, layer["v"], layer["v_bias"], h, mix)
        return q, k, v, prof

    def _attention(self, layer: LayerTensors, w: Weights, out: LayerProbe) -> None:
        m, p = self.model, self.probes
        n, hd = p.shape[0], m.head_dim
        h = self._norm(self.inputs, w.vector(layer["attn_norm"]), w.vector(layer["attn_norm_bias"]))
        if m.latent is not None:
            qk, o = self._latent_attention(layer, w, h, out)
            self._attention_out(layer, w, qk, o, out)
            return
        rows, mix = self._split(h)
        q, k, v, v_profile = self._qkv(layer, w, rows, mix[: self.mixtures.shape[0]])
        q, k = q[:n], k[:n]  # a seeded input is one token alone: its attention is its own value
        out.identity["v"] = v_profile.T  # each value dimension's profile on the mixtures
        if layer["q_norm"] and not self.spec.qk_norm_per_head:  # one norm over every head (OLMo 2)
            q = self._norm(q, w.vector(layer["q_norm"]), None)
            k = self._norm(k, w.vector(layer["k_norm"]), None)
        q, k = q.reshape(n, m.num_heads, hd), k.reshape(n, m.num_kv_heads, hd)
        if layer["q_norm"] and self.spec.qk_norm_per_head:
            q = self._norm(q, w.vector(layer["q_norm"]), None)
            k = self._norm(k, w.vector(layer["k_norm"]), None)
        group = m.num_heads // m.num_kv_heads
        k = k.repeat_interleave(group, dim=1)
        v_heads = v.reshape(v.shape[0], m.num_kv_heads, hd).repeat_interleave(group, dim=1)
        qk = torch.einsum("ahd,bhd->ab", q, k) / math.sqrt(hd)
        heads_out = v_heads.reshape(v.shape[0], -1)
        if layer["attn_sub_norm"]:  # BitNet: a norm on o's input (a value dimension's sign commutes with it)
            heads_out = self._norm(heads_out, w.vector(layer["attn_sub_norm"]), None)
        o, read = w.matmul_profiled(layer["o"], heads_out, Profiles(self.mixtures, "out"))
        b = w.vector(layer["o_bias"])
        o = o if b is None else o + b
        # A value dimension's sign flip flips the o_proj columns of every query head of its group: summed.
        out.identity["o"] = read.reshape(-1, m.num_kv_heads, group, hd).sum(2).reshape(read.shape[0], -1).T
        self._attention_out(layer, w, qk, o, out)

    def _latent_attention(self, layer: LayerTensors, w: Weights, h: torch.Tensor,
                          out: LayerProbe) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Multi-head latent attention (DeepSeek-V2/V3): `(qk, o)`, `qk` on the probes and `o` on the probes and
        the seeded inputs; the value profiles stored.

        Queries come through a low-rank path (`q_a`, its norm, `q_b`) or one `q` matrix; keys and values
        through one shared latent (`kv_a`, its norm, `kv_b`), plus one rotary key slice all heads share. The
        value dimensions are `kv_b`'s value rows: separate rows read by their own `o` columns, so a value
        dimension's sign is as free as in any attention.
        """
        m, n = self.model, self.probes.shape[0]
        nope, rope, rank = m.latent
        heads, vd = m.num_heads, m.head_dim
        if layer["q_b"]:
            q = self._norm(w.matmul(layer["q_a"], h[:n]), w.vector(layer["q_a_norm"]), None)
            q = w.matmul(layer["q_b"], q)
        else:
            q = w.matmul(layer["q"], h[:n])
        latent = w.matmul(layer["kv_a"], h)  # probes, mixtures and seeded inputs in one product
        c = self._norm(latent[:, :rank], w.vector(layer["kv_a_norm"]), None)
        per_head = torch.arange(heads, device=h.device)[:, None] * (nope + vd)
        v_rows = (per_head + nope + torch.arange(vd, device=h.device)).reshape(-1)
        rows, mix = self._split(c)
        kv, v_profile = self._affine(w, layer["kv_b"], None, rows, mix[: self.mixtures.shape[0]], v_rows)
        out.identity["v"] = v_profile.T
        kv = kv.view(rows.shape[0], heads, nope + vd)
        k = torch.cat([kv[:n, :, :nope], latent[:n, None, rank:].expand(n, heads, rope)], dim=-1)
        qk = torch.einsum("ahd,bhd->ab", q.view(n, heads, nope + rope), k) / math.sqrt(nope + rope)
        values = kv[..., nope:].reshape(rows.shape[0], -1)
        o, read = w.matmul_profiled(layer["o"], values, Profiles(self.mixtures, "out"))
        out.identity["o"] = read.T
        b = w.vector(layer["o_bias"])
        return qk, (o if b is None else o + b)

    def _attention_out(self, layer: LayerTensors, w: Weights, qk: torch.Tensor, o: torch.Tensor,
                       out: LayerProbe) -> None:  # fmt: skip
        p, n = self.probes, self.probes.shape[0]
        if layer["attn_post_norm"]:
            o = self._norm(o, w.vector(layer["attn_post_norm"]), None)
        out.sketches["qk"] = qk
        out.sketches["vo"] = o[:n] @ p.T / math.sqrt(p.shape[1])
        out.identity["resid_vo"] = o[:n, self.coordinates]
        out.identity["seeded_vo"] = o[n:, self.read]

    def _ffn(self, layer: LayerTensors, w: Weights, out: LayerProbe) -> None:
        """The FFN block: a dense FFN, or every routed expert and the shared expert, each probed as an FFN.

        A mixture's output here is the plain sum of its experts (and shared expert): the router picks experts
        per token, but the sum is what the experts' weights compute, whatever the routing, and it is the same
        for any order of the experts. The router's rows give their own response. The units of every expert
        are profiled as one FFN's, so the weight test pairs (expert, unit) by their gate profiles: expert order
        is one more symmetry the pairing does not see. Each unit's expert is recorded beside them
        (`unit_expert`), so the test's evidence can say which experts matched which.
        """
        p, n = self.probes, self.probes.shape[0]
        h = self._norm(self.inputs, w.vector(layer["ffn_norm"]), w.vector(layer["ffn_norm_bias"]))
        h, mix = self._split(h)
        experts = [f"expert.{e}." for e in range(layer.experts)]
        ffns = ["", *experts, "shared."]
        share = UNIT_SAMPLE // len(experts) if experts else UNIT_SAMPLE
        y, profiles, blocks = None, [], []
        for label, ffn in zip((DENSE_FFN, *range(len(experts)), SHARED_EXPERT), ffns):
            if not layer[ffn + "down"]:
                continue
            out_f, prof = self._one_ffn(layer, w, ffn, h, mix, share if ffn in experts else UNIT_SAMPLE)
            y = out_f if y is None else y + out_f
            if prof is not None:
                profiles.append(prof)
                blocks.append(torch.full((prof["gate"].shape[0],), float(label), device=prof["gate"].device))
        for router in ("router", "shared_router"):
            if layer[router]:
                self._affine(w, layer[router], layer[f"{router}_bias"] if router == "router" else None, h[:n])
        if profiles:
            m = self.mixtures.shape[0]
            for k in ("gate", "up", "down"):
                units = torch.cat([pr[k] for pr in profiles])
                out.identity[k] = units[:, :m]
                if self.frame.shape[0]:
                    out.identity[f"frame_{k}"] = units[:, m:]
            if experts:  # which FFN each unit belongs to: the weight test's evidence says which experts match
                out.identity["unit_expert"] = torch.cat(blocks)
        if layer["ffn_post_norm"]:
            y = self._norm(y, w.vector(layer["ffn_post_norm"]), None)
        out.sketches["ffn"] = y[:n] @ p.T / math.sqrt(p.shape[1])
        out.identity["resid_ffn"] = y[:n, self.coordinates]
        out.identity["seeded_ffn"] = y[n:, self.read]

    def _one_ffn(self, layer: LayerTensors, w: Weights, ffn: str, h: torch.Tensor, mix: torch.Tensor,
                 count: int) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:  # fmt: skip
        """One FFN's output on the probes and, when gated, its units' profiles `{gate, up, down: [U, M]}`."""
        spec, n = self.spec, self.probes.shape[0]
        if layer[ffn + "gate_up"]:
            width = w.shape(layer[ffn + "gate_up"])[0] // 2
            # Which units a wide FFN keeps is known only from the whole gate's responses to the probes, so its
            # gate profiles every unit in the main product and the kept ones are picked after; a narrow FFN
            # keeps every unit, its rows gathered on the way.
            every = None if width > count else torch.arange(2 * width, device=h.device)
            y, prof = self._affine(w, layer[ffn + "gate_up"], layer[ffn + "gate_up_bias"], h, mix, every)
            gate, up = y.chunk(2, dim=1)
            units = profiled_units(gate[:n].norm(dim=0), count)
            gate_prof, up_prof = prof[:, units], prof[:, units + width]
        elif layer[ffn + "gate"]:
            width = w.shape(layer[ffn + "gate"])[0]
            every = None if width > count else torch.arange(width, device=h.device)  # as above
            gate, gate_prof = self._affine(w, layer[ffn + "gate"], layer[ffn + "gate_bias"], h, mix, every)
            units = profiled_units(gate[:n].norm(dim=0), count)
            gate_prof = gate_prof[:, units]
            up, up_prof = self._affine(w, layer[ffn + "up"], layer[ffn + "up_bias"], h, mix, units)
        else:  # no gate, no sign symmetry of the units: nothing to profile
            up, _ = self._affine(w, layer[ffn + "up"], layer[ffn + "up_bias"], h)
            gate = None
        if gate is None:
            if spec.activation == "xielu":
                act = _xielu(up, *(w.vector(layer[f"act.{i}"]) for i in range(4)))
            else:
                act = _activation(spec.activation, up)
            y, profiles = w.matmul(layer[ffn + "down"], act), None
        else:  # a gated unit's (up, down) sign flip is exact: its profile carries a sign
            a = _gated(spec.activation, gate, up)
            if layer[ffn + "ffn_sub_norm"]:  # BitNet: a norm on down's input (a unit's sign commutes with it)
                a = self._norm(a, w.vector(layer[ffn + "ffn_sub_norm"]), None)
            y, down_prof = w.matmul_profiled(layer[ffn + "down"], a, Profiles(self.unit_vectors, "out", units))
            profiles = {"gate": gate_prof.T, "up": up_prof.T, "down": down_prof.T}
        b = w.vector(layer[ffn + "down_bias"])
        return (y if b is None else y + b), profiles
