"""Architectures as data: which tensor names play which role, per model family layout, and how they are read."""

from lineage.arch.resolve import LayerTensors, ResolvedModel, resolve_model
from lineage.arch.spec import ARCHITECTURES, ArchSpec

__all__ = ["ARCHITECTURES", "ArchSpec", "LayerTensors", "ResolvedModel", "resolve_model"]
