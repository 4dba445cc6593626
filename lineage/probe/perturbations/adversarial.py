"""FGSM-style probes: a Gaussian start moved along the sign of the probe loss's input gradient.

For the loss `||W x||` the input gradient is `W^T u` with `u = W x / ||W x||`: the step depends on the
weights, so these probes carry information the fixed families do not.
"""

from __future__ import annotations

import torch

from lineage.probe.perturbations.base import Perturbation, unit_rms

EPSILON = 0.5


class Adversarial(Perturbation):
    name = "adversarial"
    count = 3
    adversarial = True

    def make(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return unit_rms(torch.randn(self.count, n, generator=generator))

    def refine(self, probes: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return unit_rms(probes + EPSILON * torch.sign(grad))
