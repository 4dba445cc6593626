"""The catalog's manifest: one CSV row per built model, the ground truth other stages score against.

Columns, exactly: ``name,path,family,base,role,derivation,parents``. ``path`` is relative to the
manifest's own folder so the catalog can be moved as a whole; ``parents`` is ``;``-joined for merges,
the direct parent otherwise, empty for bases and outsiders; outsiders have family ``unknown`` and no base.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from lineage.catalog.recipe import OUTSIDER_FAMILY, Entry

MANIFEST_NAME = "models_manifest.csv"
COLUMNS = ("name", "path", "family", "base", "role", "derivation", "parents")


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row (see the module docstring for the meaning of each column)."""

    name: str
    path: str
    family: str
    base: str
    role: str
    derivation: str
    parents: str

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(getattr(self, c) for c in COLUMNS)


def row_for(entry: Entry, model_dir: Path, manifest_path: Path) -> ManifestRow:
    """The manifest row of a recipe entry whose model lives in ``model_dir``."""
    rel = Path(os.path.relpath(Path(model_dir).resolve(), Path(manifest_path).resolve().parent)).as_posix()
    outsider = entry.role == "outsider"
    return ManifestRow(
        name=entry.name,
        path=rel,
        family=OUTSIDER_FAMILY if outsider else entry.family,
        # A base is its own base (as in the published TensorGuard manifest); outsiders have none.
        base={"derivative": entry.base, "base": entry.name}.get(entry.role, ""),
        role=entry.role,
        derivation=entry.derivation,
        parents=";".join(entry.parents),
    )


def render_manifest(rows: list[ManifestRow]) -> str:
    """The CSV text (header + rows, ``\\n`` line ends)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.as_tuple())
    return buf.getvalue()


def write_manifest(rows: list[ManifestRow], path: Path) -> Path:
    """Write the manifest atomically (a reader never sees half a file); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_manifest(rows), encoding="utf-8")
    tmp.replace(path)
    return path
