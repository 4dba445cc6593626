"""Plain seeded Gaussian probes (the recipe's reference vector and its Gaussian noise)."""

from __future__ import annotations

import torch

from lineage.probe.perturbations.base import Perturbation, unit_rms


class Gaussian(Perturbation):
    name = "gaussian"
    count = 4

    def make(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return unit_rms(torch.randn(self.count, n, generator=generator))
