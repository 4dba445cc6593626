"""Reading manifests: the CSV that names a set of models and what is known about each.

A manifest is a CSV with at least the columns `name,path,family`. `path` is a model folder or a fingerprint
file, relative to the CSV's folder (absolute paths are kept). Optional columns: `base` (the known base the
model derives from), `role` (`base` rows are the references; others are suspects, `outsider` marks a model
whose family is not among the references), `derivation` (how it was made: finetune, merge, quantized...)
and `parents` (the names of a merge's parents, separated by `;` or `|`). A `path` of the form
`hf://org/name[@revision]` is a model hub model, fetched when fingerprinted (`lineage.io.hub`); a reference
pack folder (`lineage.refs`) reads as the manifest inside it, and `builtin` names the pack shipped in the package.

Without a `role` column every row is a reference: a manifest can then be a plain list of known models.
Reading never opens the models: a path that is missing is a per-model failure for the scan, not a
reason to reject the whole manifest.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from lineage.errors import ManifestError

REQUIRED_COLUMNS: tuple[str, ...] = ("name", "path", "family")
OPTIONAL_COLUMNS: tuple[str, ...] = ("base", "role", "derivation", "parents", "hub_id", "declared")
BASE_ROLE = "base"
OUTSIDER_ROLE = "outsider"
UNKNOWN_FAMILY = "unknown"

#: The built-in demo catalog: the 58 published TensorGuard fingerprints (Apache-2.0, see its README).
DEMO_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "tensorguard" / "manifest.csv"
#: `--reference builtin`: the built-in reference pack, a real base (see `lineage.refs.builtin`).
BUILTIN_REFERENCE = "builtin"
HUB_SCHEME = "hf://"

_PARENT_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class ManifestRow:
    """One model of a manifest.

    Attributes:
        name: unique model name.
        path: absolute path of the model folder or fingerprint file.
        family: its family label (`unknown` for a model of no known family).
        base: the known base it derives from, or None.
        role: `base`, `derivative`, `outsider`..., or None when the manifest has no role column.
        derivation: how it was derived, or None.
        parents: names of its parents (merges), possibly empty.
        hub_id: `org/name[@revision]` of a model hub model (an `hf://` path or a pack's `hub_id` column).
        declared: the hub ids its model card declares as `base_model` (column `declared`, `;`-separated).
    """

    name: str
    path: Path
    family: str
    base: str | None = None
    role: str | None = None
    derivation: str | None = None
    parents: tuple[str, ...] = ()
    hub_id: str | None = None
    declared: tuple[str, ...] = ()

    @property
    def is_outsider(self) -> bool:
        """Whether the right answer for this row is `unknown` (role `outsider` or family `unknown`)."""
        return self.role == OUTSIDER_ROLE or self.family == UNKNOWN_FAMILY


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest.

    Attributes:
        path: the CSV file.
        rows: its rows, in file order.
        has_role: whether the CSV has a `role` column.
    """

    path: Path
    rows: tuple[ManifestRow, ...]
    has_role: bool = field(default=False)

    @property
    def references(self) -> tuple[ManifestRow, ...]:
        """The known bases: rows with role `base`, or every row when there is no role column."""
        if not self.has_role:
            return self.rows
        return tuple(r for r in self.rows if r.role == BASE_ROLE)

    @property
    def suspects(self) -> tuple[ManifestRow, ...]:
        """The rows to classify: every row that is not a reference."""
        if not self.has_role:
            return ()
        return tuple(r for r in self.rows if r.role != BASE_ROLE)


def read_manifest(path: str | Path, *, require_references: bool = True) -> Manifest:
    """Read and validate a manifest CSV.

    Args:
        path: the CSV file.
        require_references: raise when no row is a reference (a manifest used to classify needs bases).

    Returns:
        The manifest, with every `path` made absolute relative to the CSV's folder.

    Raises:
        ManifestError: unreadable file, missing columns, empty or duplicate names, no references.

    Example:
        >>> m = read_manifest(DEMO_MANIFEST)
        >>> len(m.rows), len(m.references)
        (58, 8)
    """
    path = Path(path)
    if str(path) == BUILTIN_REFERENCE:
        from lineage.refs.builtin import ensure_builtin_pack

        path = ensure_builtin_pack()
    if path.is_dir() and (path / "pack.json").is_file():
        from lineage.refs.pack import pack_manifest_path  # a reference pack is a manifest of fingerprint files

        path = pack_manifest_path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder; give the manifest CSV inside it (e.g. {path / 'manifest.csv'})")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSVs with a BOM
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; a manifest needs at least {','.join(REQUIRED_COLUMNS)}"
        )
    has_role = "role" in columns
    rows: list[ManifestRow] = []
    seen: set[str] = set()
    for line_no, raw in enumerate(reader, start=2):  # line 1 is the header
        cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str) or v is None}
        if not any(cells.values()):
            continue  # blank line
        for column in REQUIRED_COLUMNS:
            if not cells.get(column):
                raise ManifestError(f"{path}, line {line_no}: empty '{column}'")
        name = cells["name"]
        if name in seen:
            raise ManifestError(f"{path}, line {line_no}: duplicate name '{name}'; names must be unique")
        seen.add(name)
        hub = cells["path"].startswith(HUB_SCHEME)  # hf://org/name[@revision]: fetched when fingerprinted
        model_path = Path(cells["path"]).expanduser()
        if not model_path.is_absolute() and not hub:
            model_path = path.parent / model_path
        rows.append(
            ManifestRow(
                name=name,
                path=model_path if hub else model_path.resolve(),
                family=cells["family"],
                base=cells.get("base") or None,
                role=(cells.get("role") or None) if has_role else None,
                derivation=cells.get("derivation") or None,
                parents=tuple(p.strip() for p in _PARENT_SEPARATORS.split(cells.get("parents", "")) if p.strip()),
                hub_id=cells.get("hub_id") or (cells["path"][len(HUB_SCHEME) :] if hub else None),
                declared=tuple(d.strip() for d in cells.get("declared", "").split(";") if d.strip()),
            )
        )
    if not rows:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    manifest = Manifest(path=path.resolve(), rows=tuple(rows), has_role=has_role)
    if require_references and not manifest.references:
        raise ManifestError(f"{path}: no row has role '{BASE_ROLE}'; mark the known bases with role=base")
    return manifest
