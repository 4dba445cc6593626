"""The models a command line names: model folders, folders of them, fingerprint files, hub paths."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lineage.errors import LineageError
from lineage.fingerprint.format import is_fingerprint_file
from lineage.io.discover import discover_models
from lineage.io.hub import is_hub_path


def expand_inputs(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """The models named on a command line, as `(path, None)`, or `(path, error)` for a path holding none.

    A path is a fingerprint file, a model folder, a folder of model folders (`discover_models`), a folder of
    fingerprint files (what `lineage fingerprint --out` writes), or `hf://org/name[@revision]` (fetched when
    fingerprinted).
    """
    found: list[tuple[Path, str | None]] = []
    for raw in paths:
        path = Path(raw)
        try:
            found.extend(_expand(path))
        except OSError as exc:  # a name too long, a loop of links: the path is one failed row
            found.append((path, f"{path}: cannot read it ({exc.strerror or exc}); check the path"))
    return found


def _expand(path: Path) -> list[tuple[Path, str | None]]:
    if is_hub_path(path) or is_fingerprint_file(path):
        return [(path, None)]
    try:
        return [(model, None) for model in discover_models(path)]
    except LineageError as exc:
        files = sorted(p for p in path.iterdir() if is_fingerprint_file(p)) if path.is_dir() else []
        return [(f, None) for f in files] if files else [(path, str(exc))]
