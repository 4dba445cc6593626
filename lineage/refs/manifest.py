"""Manifests: the CSV that names a set of models and what is known about each (a pure CSV reader).

A manifest is a CSV with at least a `path` column: a model folder, a GGUF file or a fingerprint file,
relative to the CSV's folder (absolute paths are kept). Everything else is optional. `name` defaults to the
model's name from its path (`lineage.io.names`; models that share one are told apart by their folders).
The labels are optional too: `family` (a suspect without one is unlabelled, and is given a verdict but no
score; a reference without one stands for a family of its own, its name), `base` (the known base the model
derives from), `role` (`base` rows are the references; others are suspects, `outsider` marks a model whose
family is not among the references, `independent` one trained from scratch), `derivation` (how it was
made: finetune, merge, quantized...), `parents` (the names of its parents, separated by `;` or `|`) and
`license` (the licence its terms are under: what its derivatives inherit, `lineage.tree.licence`). A
`path` of the form `hf://org/name[@revision]` is a model hub model, fetched when fingerprinted
(`lineage.io.hub`). A reference pack or `builtin` is read through `lineage.refs.open.open_references`,
which finds the CSV inside it; this module reads CSV files only.

Without a `role` column every row is a reference: a manifest can then be a plain list of known models (or,
given to `lineage scan` next to `--reference`, a plain list of suspects). Reading never opens the models: a
path that is missing is a per-model failure for the scan, not a reason to reject the whole manifest.

The label words are defined here once (roles) or taken from the verdicts (`unknown`, the family of a model
of no known family), and every scorer, evaluation and report reads them from here.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from lineage.decide.verdict import UNKNOWN
from lineage.errors import ManifestError
from lineage.io.hub import HUB_SCHEME, is_hub_path
from lineage.io.names import model_name, unique_names

REQUIRED_COLUMNS: tuple[str, ...] = ("path",)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "name", "family", "base", "role", "derivation", "parents", "hub_id", "declared", "license",
)  # fmt: skip
#: Roles: the known bases (the references), their derivatives, models of no reference's family, models trained
#: from scratch (with a family's tokenizer, perhaps: never derived).
BASE_ROLE, DERIVATIVE_ROLE, OUTSIDER_ROLE, INDEPENDENT_ROLE = "base", "derivative", "outsider", "independent"
#: Every role a manifest may give (read case-insensitively): any other word is refused, since a misspelt
#: `base` would silently turn a reference into a suspect.
ROLES: tuple[str, ...] = (BASE_ROLE, DERIVATIVE_ROLE, OUTSIDER_ROLE, INDEPENDENT_ROLE)
#: The family label of a model of no known family: the `unknown` verdict's own word.
UNKNOWN_FAMILY = UNKNOWN
#: What is taken wherever a set of references is (`lineage.refs.open.open_references`), in the words of errors.
REFERENCE_SET_TAKES = "a reference set is a manifest CSV, a reference pack folder (`lineage refs build`) or 'builtin'"

_PARENT_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class ManifestRow:
    """One model of a manifest.

    Attributes:
        name: unique model name.
        path: absolute path of the model folder or fingerprint file.
        family: its family label (`unknown` for a model of no known family), None when unlabelled.
        base: the known base it derives from, or None.
        role: `base`, `derivative`, `outsider`..., or None when the manifest has no role column.
        derivation: how it was derived, or None.
        parents: names of its parents (merges), possibly empty.
        hub_id: `org/name[@revision]` of a model hub model (an `hf://` path or a pack's `hub_id` column).
        declared: the hub ids its model card declares as `base_model` (column `declared`, `;`-separated).
        license: its licence (column `license`: an SPDX id or the hub's licence name), None when not given.
    """

    name: str
    path: Path
    family: str | None = None
    base: str | None = None
    role: str | None = None
    derivation: str | None = None
    parents: tuple[str, ...] = ()
    hub_id: str | None = None
    declared: tuple[str, ...] = ()
    license: str | None = None

    @property
    def is_outsider(self) -> bool:
        """Whether the right answer for this row is `unknown` (role `outsider` or family `unknown`)."""
        return self.role == OUTSIDER_ROLE or self.family == UNKNOWN_FAMILY

    @property
    def labelled(self) -> bool:
        """Whether the row says what the model is (a family, a base or a role that implies the answer)."""
        return self.family is not None or self.base is not None or self.role in (OUTSIDER_ROLE, INDEPENDENT_ROLE)


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
        """The known bases: rows with role `base`, or every row when there is no role column. A reference
        without a family label stands for a family of its own: its `family` is its name here."""
        rows = self.rows if not self.has_role else tuple(r for r in self.rows if r.role == BASE_ROLE)
        return tuple(r if r.family is not None else replace(r, family=r.name) for r in rows)

    @property
    def suspects(self) -> tuple[ManifestRow, ...]:
        """The rows to classify: every row that is not a reference."""
        if not self.has_role:
            return ()
        return tuple(r for r in self.rows if r.role != BASE_ROLE)

    def adapter_bases(self) -> dict[str, Path]:
        """Where LoRA adapters find their base among the references: hub id -> the reference's model folder
        (`lineage.io.adapter_base.adapter_bases`; an adapter names its base by `base_model_name_or_path`)."""
        return {r.hub_id: r.path for r in self.references if r.hub_id and Path(r.path).is_dir()}


def read_manifest(path: str | Path, *, require_references: bool = True) -> Manifest:
    """Read and validate a manifest CSV.

    Args:
        path: the CSV file (a reference pack or `builtin`: `lineage.refs.open.open_references`).
        require_references: raise when no row is a reference (a manifest used to classify needs bases).

    Returns:
        The manifest, with every `path` made absolute relative to the CSV's folder.

    Raises:
        ManifestError: unreadable file, not a CSV, no `path` column, empty or duplicate names, no references.

    Example:
        >>> from lineage.data import DEMO_MANIFEST
        >>> m = read_manifest(DEMO_MANIFEST)
        >>> len(m.rows), len(m.references)
        (58, 8)
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSVs with a BOM
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a manifest CSV (binary content); {REFERENCE_SET_TAKES}") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "path" not in columns:
        raise ManifestError(
            f"{path}: no 'path' column; a manifest is a CSV with at least a path column (optional: "
            f"{','.join(OPTIONAL_COLUMNS)})"
        )
    has_role = "role" in columns
    rows = _named_rows(path, _once([(n, _row(path, n, cells, has_role)) for n, cells in _cells(reader)], path))
    if not rows:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    manifest = Manifest(path=path.resolve(), rows=tuple(rows), has_role=has_role)
    if require_references and not manifest.references:
        raise ManifestError(f"{path}: no row has role '{BASE_ROLE}'; mark the known bases with role=base")
    return manifest


def _cells(reader: csv.DictReader) -> list[tuple[int, dict[str, str]]]:
    """`(line number, stripped cells)` of every non-blank row."""
    out = []
    for line_no, raw in enumerate(reader, start=2):  # line 1 is the header
        cells = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str) or v is None}
        if any(cells.values()):
            out.append((line_no, cells))
    return out


def _row(path: Path, line_no: int, cells: dict[str, str], has_role: bool) -> ManifestRow:
    """One row, its path made absolute (its name may still be empty: `_named_rows` fills it)."""
    if not cells.get("path"):
        raise ManifestError(f"{path}, line {line_no}: empty 'path'")
    role = (cells.get("role") or "").lower() or None
    if has_role and role is not None and role not in ROLES:
        raise ManifestError(
            f"{path}, line {line_no}: role '{cells['role']}' is not one of {', '.join(ROLES)} (left empty: a suspect)"
        )
    hub = is_hub_path(cells["path"])  # hf://org/name[@revision]: fetched when fingerprinted
    model_path = Path(cells["path"]).expanduser()
    if not model_path.is_absolute() and not hub:
        model_path = path.parent / model_path
    return ManifestRow(
        name=cells.get("name", ""),
        path=model_path if hub else model_path.resolve(),
        family=cells.get("family") or None,
        base=cells.get("base") or None,
        role=role if has_role else None,
        derivation=cells.get("derivation") or None,
        parents=tuple(p.strip() for p in _PARENT_SEPARATORS.split(cells.get("parents", "")) if p.strip()),
        hub_id=cells.get("hub_id") or (cells["path"][len(HUB_SCHEME) :] if hub else None),
        declared=tuple(d.strip() for d in cells.get("declared", "").split(";") if d.strip()),
        license=cells.get("license") or None,
    )


def _once(rows: list[tuple[int, ManifestRow]], path: Path) -> list[tuple[int, ManifestRow]]:
    """Rows with a model listed twice kept once: a second row of the same model and the same labels is dropped
    (it would count twice among the suspects, in the expected false accusations and in BH); one with other
    labels is refused, naming both lines."""
    first: dict[str, tuple[int, ManifestRow]] = {}
    out = []
    for line_no, row in rows:
        seen = first.get(str(row.path))
        if seen is None:
            first[str(row.path)] = (line_no, row)
            out.append((line_no, row))
        elif replace(row, name=seen[1].name) != seen[1] or (row.name and seen[1].name and row.name != seen[1].name):
            raise ManifestError(
                f"{path}, line {line_no}: the model of line {seen[0]} again ({row.path}) with other labels or name; "
                "list each model once"
            )
    return out


def _named_rows(path: Path, rows: list[tuple[int, ManifestRow]]) -> list[ManifestRow]:
    """Rows without a name take their model's (told apart by folder when several share one); names given
    in the CSV must be unique."""
    given = {r.name for _, r in rows if r.name}
    unnamed = [i for i, (_, r) in enumerate(rows) if not r.name]
    made = unique_names([model_name(rows[i][1].path) for i in unnamed], [rows[i][1].path for i in unnamed])
    named = [r for _, r in rows]
    for i, name in zip(unnamed, made):
        while name in given:  # a made-up name never takes one the CSV gave
            name += "#2"
        named[i] = replace(named[i], name=name)
    seen: set[str] = set()
    for (line_no, _), row in zip(rows, named):
        if row.name in seen:
            raise ManifestError(f"{path}, line {line_no}: duplicate name '{row.name}'; names must be unique")
        seen.add(row.name)
    return named


def manifest_of_models(paths: list[tuple[Path, str | None]]) -> tuple[Manifest, list[tuple[ManifestRow, str]]]:
    """The models of a command line (`expand_inputs`) as an unlabelled manifest of suspects.

    Returns:
        `(manifest of the models found, [(row, error)] for the paths that hold none)`; every row named by
        `lineage.io.names`, models that share a name told apart by their folders.
    """
    given: set[str] = set()
    once = []
    for p, e in paths:  # a model given twice (`scan x x`, a folder and a model inside it) is one row
        where = str(p) if is_hub_path(p) else os.path.realpath(p)
        if where not in given:
            given.add(where)
            once.append((p, e))
    paths = once
    names = unique_names([model_name(p) for p, _ in paths], [p for p, _ in paths])
    rows = [ManifestRow(name=n, path=Path(p) if is_hub_path(p) else Path(p).resolve())
            for n, (p, _) in zip(names, paths)]  # fmt: skip
    good = tuple(r for r, (_, e) in zip(rows, paths) if e is None)
    bad = [(r, e) for r, (_, e) in zip(rows, paths) if e is not None]
    return Manifest(path=Path("."), rows=good, has_role=False), bad
