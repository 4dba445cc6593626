"""The catalog's manifest: one CSV row per built model, the ground truth other stages score against.

Columns, exactly: ``name,path,family,base,role,derivation,parents,hub_id,declared``. ``path`` is
relative to the manifest's own folder so the catalog can be moved as a whole; ``parents`` is ``;``-joined
for merges, the direct parent otherwise, empty for models trained from scratch; outsiders have family
``unknown`` and no base; independents (role ``independent``: trained from scratch on a family's tokenizer,
or derived from such a model) have their tokenizer's family and no base. ``hub_id`` is the model's id on
the hub (``lineage-catalog/<name>``), ``declared`` the hub ids its model card declares as ``base_model``
(``;``-joined, empty when it declares none).

The manifest depends on the recipe alone, not on the built weights: `catalog_rows` writes it for a
catalog that is not built yet.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from lineage.catalog.declare import hub_id
from lineage.catalog.recipe import OUTSIDER_FAMILY, Entry, Recipe

MANIFEST_NAME = "models_manifest.csv"
COLUMNS = ("name", "path", "family", "base", "role", "derivation", "parents", "hub_id", "declared")


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
    hub_id: str
    declared: str

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
        hub_id=hub_id(entry.name),
        declared=";".join(entry.declared.base_models) if entry.declared else "",
    )


def catalog_rows(recipe: Recipe, out_dir: Path, manifest_path: Path) -> list[ManifestRow]:
    """The manifest rows of a (selected) recipe whose models live, or will live, in ``out_dir``."""
    return [row_for(e, Path(out_dir) / e.name, manifest_path) for e in recipe.entries]


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
