"""Default locations of lineage's own files (the fingerprint cache) and the names of fingerprint files."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def default_cache_dir() -> Path:
    """`$LINEAGE_CACHE`, else `$XDG_CACHE_HOME/lineage`, else `~/.cache/lineage`."""
    if os.environ.get("LINEAGE_CACHE"):
        return Path(os.environ["LINEAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lineage"


def default_fingerprint_dir() -> Path:
    """Where `lineage fingerprint` writes when no --out is given."""
    return default_cache_dir() / "fingerprints"


def file_stem(name: str) -> str:
    """A model name as a file name stem: folders (`org/llama`, from `unique_names`) become `org__llama`."""
    return _UNSAFE.sub("_", name.replace("/", "__")).strip("._") or "model"


def keyed_stem(name: str, model_path: str | Path) -> str:
    """`<name>-<10 hex of sha256(absolute path)>`: the same model always gets the same file, two models of one
    name in different folders never share one (what `lineage fingerprint` without --out writes)."""
    digest = hashlib.sha256(os.path.abspath(model_path).encode("utf-8")).hexdigest()[:10]
    return f"{file_stem(name)}-{digest}"
