"""Ways to compare fingerprints: one module per method behind `Method`, named in `registry.METHODS`."""

from lineage.compare.base import Method
from lineage.compare.registry import DEFAULT_METHOD, METHODS, get_method

__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "get_method"]
