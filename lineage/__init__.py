"""lineage: which base-model family an LLM checkpoint comes from, from its weights alone."""

__version__ = "0.1.0"
