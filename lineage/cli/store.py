"""`lineage store build|classify`: a million fingerprints in one memory-mapped file (filled in below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `store` command group to `app` (none yet)."""
