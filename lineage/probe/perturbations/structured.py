"""Structured probes: sparse +-1 patterns and a block-constant ramp, shapes that random noise never has."""

from __future__ import annotations

import torch

from lineage.probe.perturbations.base import Perturbation, unit_rms


class Structured(Perturbation):
    name = "structured"
    count = 2

    def make(self, n: int, generator: torch.Generator) -> torch.Tensor:
        sparse = torch.zeros(n)
        k = max(1, n // 16)
        idx = torch.randperm(n, generator=generator)[:k]
        sparse[idx] = torch.randint(0, 2, (k,), generator=generator).float() * 2 - 1
        blocks = max(1, n // 64)
        ramp = torch.linspace(-1.0, 1.0, blocks).repeat_interleave(-(-n // blocks))[:n]
        return unit_rms(torch.stack([sparse, ramp]))
