"""Merge attribution: which known models a suspect was merged from, and with what weights."""

from lineage.attribute.nnls import (
    Attribution,
    AttributionOptions,
    LayerEvidence,
    ParentWeight,
    attribute,
    attribute_paths,
    attribute_with_base,
)

__all__ = [
    "Attribution",
    "AttributionOptions",
    "LayerEvidence",
    "ParentWeight",
    "attribute",
    "attribute_paths",
    "attribute_with_base",
]
