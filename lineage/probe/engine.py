"""Per-tensor gradient responses to seeded probes, all probes of a tensor in one matrix product.

For a probe `x` and the recipe's loss `L = ||W x||`, the gradient with respect to `W` is the rank-one
`u x^T` with `u = W x / ||W x||`. Its summary statistics (mean, std, norm, skewness, kurtosis over all
`out*in` entries) therefore follow in closed form from the power sums of `u` and `x`: the gradient matrix is
never built, and one product `X W^T` serves all 15 probes. The raw responses `W x` of the 12 fixed probes,
projected on a seeded random basis, are kept too: they are linear in `W`, which merge attribution needs.

The same pass serves the caller twice more: its own inputs meet the block in the same product (the
circuits' normalised token embeddings, `inputs @ W^T`), and a caller's read-out vectors `z` meet it from the
other side (`z @ W`, accumulated over the row blocks), so a matrix whose input side the circuits read back
(`o_proj`, `down_proj`) is still read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lineage.probe.perturbations import PERTURBATIONS, make_probes, probe_seed

RESPONSE_RANK = 8  # columns of the random basis the raw responses are projected on


@dataclass(frozen=True)
class TensorResponse:
    """What one tensor's probes yield.

    Attributes:
        gradient_stats: float64 [5]: mean, std, norm, skewness, kurtosis of the weight gradient, averaged
            over the 15 probes.
        responses: float32 [12, RESPONSE_RANK]: `Psi^T W X^T` for the 12 fixed probes.
    """

    gradient_stats: np.ndarray
    responses: np.ndarray


@dataclass(frozen=True)
class Product:
    """What one streamed weight gives back to its caller.

    Attributes:
        out: `inputs @ W^T` on the device, or None without inputs.
        back: `back @ W` on the device, or None without read-out vectors.
        response: the tensor's own probe responses.
    """

    out: torch.Tensor | None
    back: torch.Tensor | None
    response: TensorResponse


def _gradient_moments(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Statistics of the rank-one matrices `u_p x_p^T`, one row per probe p, from power sums.

    Args:
        u: [P, out] unit responses; x: [P, in] probes (float64).

    Returns:
        [P, 5]: mean, std (unbiased, as torch.std), Frobenius norm, skewness, excess kurtosis.
    """
    count = u.shape[1] * x.shape[1]
    s = [(u.pow(k).sum(1) * x.pow(k).sum(1)) for k in (1, 2, 3, 4)]
    mean = s[0] / count
    e2, e3, e4 = s[1] / count, s[2] / count, s[3] / count
    var = (e2 - mean**2).clamp_min(1e-300)
    m3 = e3 - 3 * mean * e2 + 2 * mean**3
    m4 = e4 - 4 * mean * e3 + 6 * mean**2 * e2 - 3 * mean**4
    std = (var * count / max(count - 1, 1)).sqrt()
    return torch.stack([mean, std, s[1].sqrt(), m3 / var.pow(1.5), m4 / var**2 - 3.0], dim=1)


def role_kind(role: str) -> str:
    """The kind of a role key: `layers.3.q` -> `q`, `embed` -> `embed`."""
    return role.rsplit(".", 1)[-1]


class NonFiniteResponse(ValueError):
    """A weight produced NaN/Inf responses: it holds NaN or Inf values (Gaussian probes touch every entry)."""


Blocks = Callable[[], Iterator[tuple[int, torch.Tensor]]]


class ProbeEngine:
    """Runs probes on one device.

    Args:
        device: a torch device (see `lineage.probe.device.select_device`).
        seed: the global probe seed.
    """

    def __init__(self, device: torch.device, seed: int) -> None:
        self.device = device
        self.seed = seed
        self._bases: dict[tuple[int, str], torch.Tensor] = {}
        self._probe_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move a CPU float32 tensor to the engine's device."""
        return tensor.to(self.device, non_blocking=False)

    def _probes(self, role: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Probes depend on the tensor kind (`q`, `down`, `embed`...) and shape, not the layer: the same
        # vectors probe every layer, so they are made once per kind and kept on the device.
        key = (role_kind(role), *shape)
        if key not in self._probe_cache:
            self._probe_cache[key] = tuple(self.put(t) for t in make_probes(role_kind(role), shape, self.seed))
        return self._probe_cache[key]

    def _basis(self, rows: int, role: str) -> torch.Tensor:
        kind = role_kind(role)
        if (rows, kind) not in self._bases:
            # One basis per output size and tensor kind, shared by all layers (seeded, not random).
            gen = torch.Generator().manual_seed(probe_seed("basis:" + kind, (rows,), self.seed))
            self._bases[rows, kind] = self.put(torch.randn(rows, RESPONSE_RANK, generator=gen) / rows**0.5)
        return self._bases[rows, kind]

    def respond(
        self,
        blocks: Blocks,
        shape: tuple[int, int],
        role: str,
        inputs: torch.Tensor | None = None,
        with_stats: bool = True,
        back: torch.Tensor | None = None,
    ) -> Product:
        """Stream one 2-D weight through its probes (and the caller's inputs) in one product per row block.

        Args:
            blocks: returns an iterator of `(first_row, block)` float32 CPU row blocks of the weight; called
                a second time only when `with_stats` and the weight came in more than one block (the
                adversarial probes depend on the whole weight).
            shape: the weight's (out, in) shape.
            role: its role key (seeds its probes).
            inputs: `[n, in]` on the device, or None: the caller's own inputs (circuit probes).
            with_stats: compute the gradient statistics (the TensorGuard recipe's tensors only).
            back: `[m, out]` on the device, or None: read-out vectors met from the output side.

        Returns:
            `inputs @ W.T`, `back @ W` and the tensor's responses (`gradient_stats` empty without stats).

        Raises:
            NonFiniteResponse: the weight holds NaN or Inf.
        """
        fixed, adv = self._probes(role, shape)
        n = 0 if inputs is None else inputs.shape[0]
        # The adversarial starts only matter for the statistics: other tensors skip their rows.
        x = torch.cat([t for t in (inputs, fixed, adv if with_stats else None) if t is not None])
        outs, gram, first = [], torch.zeros_like(adv), None
        read = None if back is None else back.new_zeros(back.shape[0], shape[1])
        for start, block in blocks():
            w = self.put(block)
            y = x @ w.T  # every probe of this block in one product
            outs.append(y)
            if read is not None:
                read += back[:, start : start + w.shape[0]] @ w
            if with_stats:
                gram += y[-len(adv) :] @ w  # accumulates W^T W x for the adversarial starts
                first = w if not outs[1:] else None  # a one-block matrix is kept for the second pass
        y = torch.cat(outs, dim=1)
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteResponse(role)
        fixed_resp = y[n : n + len(fixed)]
        basis = self._basis(shape[0], role)
        projected = (fixed_resp @ basis).float().cpu().numpy()
        stats = np.zeros(0)
        if with_stats:
            start_resp = y[n + len(fixed) :]
            grad_x = gram / start_resp.norm(dim=1, keepdim=True).clamp_min(1e-30)  # input gradient of ||W x||
            adversarial = next(p for p in PERTURBATIONS if p.adversarial)
            adv_probes = adversarial.refine(adv, grad_x)
            if first is not None:
                adv_resp = adv_probes @ first.T
            else:  # several blocks were not held: read the matrix again
                adv_resp = torch.cat([adv_probes @ self.put(b).T for _, b in blocks()], dim=1)
            unit = lambda r: r / r.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
            u = torch.cat([unit(fixed_resp), unit(adv_resp)]).double()
            stats = _gradient_moments(u, torch.cat([fixed, adv_probes]).double()).mean(0).cpu().numpy()
        out = y[:n] if inputs is not None else None
        return Product(out, read, TensorResponse(stats, projected))

    def tensor_response(self, weight: torch.Tensor, role: str) -> TensorResponse:
        """`respond` for a weight already in memory (one block), with statistics."""
        return self.respond(lambda: iter([(0, weight)]), tuple(weight.shape), role).response
