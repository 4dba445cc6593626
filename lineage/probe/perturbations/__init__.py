"""Probe families for the per-tensor gradient responses (the TensorGuard recipe's five kinds)."""

from lineage.probe.perturbations.base import Perturbation, probe_seed
from lineage.probe.perturbations.registry import PERTURBATIONS, make_probes

__all__ = ["PERTURBATIONS", "Perturbation", "make_probes", "probe_seed"]
