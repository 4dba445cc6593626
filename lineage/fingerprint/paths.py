"""Default locations of lineage's own files (the fingerprint cache)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """`$LINEAGE_CACHE`, else `$XDG_CACHE_HOME/lineage`, else `~/.cache/lineage`."""
    if os.environ.get("LINEAGE_CACHE"):
        return Path(os.environ["LINEAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lineage"


def default_fingerprint_dir() -> Path:
    """Where `lineage fingerprint` writes when no --out is given."""
    return default_cache_dir() / "fingerprints"
