"""Per-tensor gradient responses to seeded probes, all probes of a tensor in one matrix product.

For a probe `x` and the recipe's loss `L = ||W x||`, the gradient with respect to `W` is the rank-one
`u x^T` with `u = W x / ||W x||`. Its summary statistics (mean, std, norm, skewness, kurtosis over all
`out*in` entries) therefore follow in closed form from the power sums of `u` and `x`: the gradient matrix is
never built, and one product `X W^T` serves all 15 probes. The raw responses `W x` of the 12 fixed probes,
projected on a seeded random basis, are kept too: they are linear in `W`, which merge attribution needs.
"""

from __future__ import annotations

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

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move a CPU float32 tensor to the engine's device."""
        return tensor.to(self.device, non_blocking=False)

    def _basis(self, rows: int, role: str) -> torch.Tensor:
        key = (rows, role.split(".")[-1])
        if key not in self._bases:
            # One basis per output size and tensor kind, shared by all layers (seeded, not random).
            gen = torch.Generator().manual_seed(probe_seed("basis:" + role.split(".")[-1], (rows,), self.seed))
            self._bases[key] = self.put(torch.randn(rows, RESPONSE_RANK, generator=gen) / rows**0.5)
        return self._bases[key]

    def tensor_response(self, weight: torch.Tensor, role: str) -> TensorResponse:
        """Gradient responses of one 2-D weight (already on the device, float32) to its 15 probes.

        Args:
            weight: [out, in] float32 on `self.device`.
            role: the tensor's role key (seeds its probes).

        Returns:
            Its `TensorResponse`.
        """
        fixed, adv = make_probes(role, tuple(weight.shape), self.seed)
        fixed, adv = self.put(fixed), self.put(adv)
        start = torch.cat([fixed, adv])
        resp = start @ weight.T  # [15, out]: every probe in one product
        unit = resp / resp.norm(dim=1, keepdim=True).clamp_min(1e-30)
        adversarial = next(p for p in PERTURBATIONS if p.adversarial)
        grad_x = unit[len(fixed) :] @ weight  # input gradient of ||W x|| at the adversarial starts
        adv_probes = adversarial.refine(adv, grad_x)
        adv_resp = adv_probes @ weight.T
        adv_unit = adv_resp / adv_resp.norm(dim=1, keepdim=True).clamp_min(1e-30)
        u = torch.cat([unit[: len(fixed)], adv_unit]).double()
        x = torch.cat([fixed, adv_probes]).double()
        stats = _gradient_moments(u, x).mean(0)
        projected = resp[: len(fixed)] @ self._basis(weight.shape[0], role)
        return TensorResponse(stats.cpu().numpy(), projected.float().cpu().numpy())
