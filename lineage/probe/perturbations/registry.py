"""The explicit registry of probe families, and the batch of probes for one tensor."""

from __future__ import annotations

import torch

from lineage.probe.perturbations.adversarial import Adversarial
from lineage.probe.perturbations.base import Perturbation, probe_seed
from lineage.probe.perturbations.gaussian import Gaussian
from lineage.probe.perturbations.spectral import HighFrequency, LowFrequency
from lineage.probe.perturbations.structured import Structured

#: Order matters: it fixes the rows of every probe batch (15 probes, as in the paper).
PERTURBATIONS: tuple[Perturbation, ...] = (Gaussian(), LowFrequency(), HighFrequency(), Structured(), Adversarial())


def make_probes(role: str, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All probes for a tensor of `shape` (out, in) playing `role`.

    Args:
        role: the tensor's kind, e.g. `q` or `embed` (the engine passes kinds, so all layers share probes).
        shape: the tensor's shape; probes have dimension `shape[-1]`.
        seed: the global probe seed.

    Returns:
        (fixed probes [12, in], adversarial starting points [3, in]), float32 on the CPU.
    """
    generator = torch.Generator().manual_seed(probe_seed(role, shape, seed))
    n = int(shape[-1])
    fixed = [p.make(n, generator) for p in PERTURBATIONS if not p.adversarial]
    adv = [p.make(n, generator) for p in PERTURBATIONS if p.adversarial]
    return torch.cat(fixed), torch.cat(adv)
