"""Reference packs: a manifest's known models as fingerprint files, in one self-describing folder.

A pack lets the references be fingerprinted once, where the weights are (a GPU box with the bases
downloaded), and classify anywhere else without them: a fingerprint is all classification needs. Layout:

    PACK/
      pack.json                  format and lineage versions, who made it, sha256 of every other file
      manifest.csv               name,path,family,base,role,license,hub_id (paths relative to the pack)
      settings.json              the probe settings every fingerprint of the pack was made with
      fingerprints/<name>.fingerprint.safetensors

`manifest.csv` is an ordinary manifest, so `open_references(PACK)` (which `--reference PACK` goes
through, `lineage.refs.open`) turns a pack into a `Manifest` whose paths are its fingerprint files. Reading
a pack checks its format version and the sha256 of every file `pack.json` lists (`check_pack_files`: a
flipped byte or a deleted reference is refused in one line naming the file, before anything is classified
against it; hashing is about 1 GB/s, milliseconds for the built-in pack, a few seconds for a thousand
references; `--skip-pack-check` skips it for a pack checked already, with a warning). `pack_problems`
(`lineage refs verify`) checks all that, stray files, the references' probe settings and the pipeline
version, and reports every problem instead of the first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lineage import __version__
from lineage.errors import FingerprintFormatError, PackError
from lineage.fingerprint.format import Fingerprint, fingerprint_path, load_fingerprint, save_fingerprint
from lineage.io.jsonfile import read_folder_document, read_json_object
from lineage.refs.manifest import read_manifest

PACK_FORMAT = "lineage-reference-pack"
PACK_VERSION = 1
PACK_FILE = "pack.json"
MANIFEST_FILE = "manifest.csv"
SETTINGS_FILE = "settings.json"
FINGERPRINT_DIR = "fingerprints"
MANIFEST_COLUMNS: tuple[str, ...] = ("name", "path", "family", "base", "role", "license", "hub_id")
#: Settings that describe one model rather than how the probes ran: they differ between references of one pack.
MODEL_SETTINGS: frozenset[str] = frozenset({"layout", "layers", "symmetry", "source", "source_revision"})
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PackReference:
    """One reference to pack.

    Attributes:
        name: its name in the manifest.
        family: its family label.
        fingerprint: its fingerprint.
        base: its base label (the name when None).
        hub_id: `org/name@commit` when it came from a model hub.
        license: its licence (the manifest's `license` column), kept so that derivatives inherit it.
    """

    name: str
    family: str
    fingerprint: Fingerprint
    base: str | None = None
    hub_id: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.family:
            raise ValueError("a pack reference needs a name and a family")


def probe_settings(fp: Fingerprint) -> dict:
    """The settings of `fp` that every fingerprint compared with it must share (model facts left out)."""
    return {k: v for k, v in sorted(fp.settings.items()) if k not in MODEL_SETTINGS}


def write_pack(
    references: Sequence[PackReference], out: str | Path, *, created_by: str = "lineage refs build", force: bool = False
) -> Path:
    """Write a reference pack folder.

    Args:
        references: the references, in manifest order.
        out: the pack folder (must not exist, or be empty, unless `force`).
        created_by: the command that made it, recorded in `pack.json`.
        force: replace an existing pack folder.

    Returns:
        The pack folder.

    Raises:
        PackError: no references, duplicate names, fingerprints of different probe settings or without
            sketches, or `out` exists.
    """
    out = Path(out)
    if not references:
        raise PackError(f"{out}: no references to pack")
    names = [r.name for r in references]
    if len(set(names)) != len(names):
        raise PackError(f"{out}: duplicate reference names; names must be unique")
    settings = probe_settings(references[0].fingerprint)
    for ref in references:
        if not ref.fingerprint.has_sketches:
            raise PackError(f"{out}: reference '{ref.name}' has no lineage sketches (a published feature file?)")
        if probe_settings(ref.fingerprint) != settings:
            raise PackError(
                f"{out}: reference '{ref.name}' was fingerprinted with other probe settings than "
                f"'{references[0].name}': fingerprint every reference with one setting"
            )
    occupied = (out.is_dir() and any(out.iterdir())) or out.is_file()
    if occupied and not force:
        raise PackError(f"{out}: already exists and is not empty; pass --force to replace it")
    # Written next to its final place, then swapped in: a crash never leaves a half-written pack.
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / FINGERPRINT_DIR).mkdir(parents=True)
    rows, used = [], set()
    for ref in references:
        stem = _file_stem(ref.name, used)
        rel = fingerprint_path(FINGERPRINT_DIR, stem)
        save_fingerprint(ref.fingerprint, tmp / rel)
        rows.append([ref.name, rel.as_posix(), ref.family, ref.base or ref.name, "base", ref.license or "",
                     ref.hub_id or ""])  # fmt: skip
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    (tmp / MANIFEST_FILE).write_text(buf.getvalue(), encoding="utf-8")
    (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    doc = {
        "format": PACK_FORMAT,
        "format_version": PACK_VERSION,
        "lineage_version": __version__,
        "created": {
            "by": created_by,
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "devices": sorted({r.fingerprint.device for r in references}),
        },
        "references": len(references),
        "families": sorted({r.family for r in references}),
        "files": {rel: _sha256(tmp / rel) for rel in _files(tmp)},
    }
    (tmp / PACK_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    return out


def is_pack(path: str | Path) -> bool:
    """Whether `path` is a pack folder (holds a `pack.json`)."""
    return (Path(path) / PACK_FILE).is_file()


def read_pack_info(path: str | Path) -> dict:
    """The `pack.json` document of a pack, checked for format and version.

    Raises:
        PackError: no pack.json, unreadable, or of another format or version.
    """
    doc = read_folder_document(
        path, PACK_FILE, PackError, kind="reference pack", form=PACK_FORMAT, version=PACK_VERSION,
        build="lineage refs build",
    )  # fmt: skip
    if not isinstance(doc.get("files"), dict):
        raise PackError(f"{Path(path) / PACK_FILE}: no file checksums")
    return doc


def pack_manifest_path(path: str | Path, verify: bool = True) -> Path:
    """The manifest CSV of a pack, after checking its format version and (unless `verify` is False) the
    sha256 of every file it lists; what `read_manifest` reads.

    Raises:
        PackError: not a pack, another format version, no manifest, or (with `verify`) a listed file
            missing or altered.
    """
    doc = read_pack_info(path)
    manifest = Path(path) / MANIFEST_FILE
    if not manifest.is_file():
        raise PackError(f"{path}: the pack has no {MANIFEST_FILE}; rebuild it")
    if verify:
        check_pack_files(path, doc)
    return manifest


def check_pack_files(path: str | Path, doc: dict | None = None) -> None:
    """Check every file `pack.json` lists against its sha256 (the cheap part of `pack_problems`).

    Raises:
        PackError: one line naming the first file missing or altered (and how many more there are).
    """
    path = Path(path)
    doc = doc if doc is not None else read_pack_info(path)
    problems = []
    for rel, digest in sorted(doc["files"].items()):
        file = path / rel
        if not file.is_file():
            problems.append(f"{file}: missing (listed in {PACK_FILE})")
        elif _sha256(file) != digest:
            problems.append(f"{file}: altered (sha256 differs from {PACK_FILE})")
    if problems:
        more = f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""
        raise PackError(
            f"{problems[0]}{more}: the reference pack changed after it was built; rebuild it "
            "(`lineage refs build`), or pass --skip-pack-check to use it as it is"
        )


def read_pack_settings(path: str | Path) -> dict:
    """The probe settings a pack's references were fingerprinted with."""
    return read_json_object(Path(path) / SETTINGS_FILE, PackError, "unreadable probe settings")


def pack_problems(path: str | Path, current_settings: dict | None = None) -> list[str]:
    """Check a pack: every listed file present and unchanged, no stray file, versions, comparable settings
    (`lineage.refs.verify_pack` takes `builtin` too).

    Args:
        path: the pack folder.
        current_settings: this lineage's probe settings (`FingerprintOptions().settings()`); when given, a
            pack of another pipeline version is reported (its references would not compare with new models).

    Returns:
        One line per problem, `<file>: <problem>`; empty when the pack is sound.
    """
    path = Path(path)
    try:
        doc = read_pack_info(path)
    except PackError as exc:
        return [str(exc)]
    problems: list[str] = []
    listed: dict[str, str] = doc["files"]
    for rel, digest in sorted(listed.items()):
        file = path / rel
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif _sha256(file) != digest:
            problems.append(f"{file}: altered (sha256 differs from {PACK_FILE})")
    problems += [f"{path / rel}: extra file, not listed in {PACK_FILE}" for rel in _files(path) if rel not in listed]
    if problems:
        return problems
    settings = read_pack_settings(path)
    try:
        manifest = read_manifest(path / MANIFEST_FILE)
    except Exception as exc:  # noqa: BLE001 - a verifier reports, it does not raise
        return [str(exc)]
    root = path.resolve()
    for row in manifest.rows:
        if root not in row.path.parents:
            problems.append(f"{path / MANIFEST_FILE}: '{row.name}' points outside the pack ({row.path})")
            continue
        try:
            fp = load_fingerprint(row.path)
        except FingerprintFormatError as exc:
            problems.append(str(exc))
            continue
        if probe_settings(fp) != settings:
            problems.append(f"{row.path}: probe settings differ from {SETTINGS_FILE}")
    if current_settings is not None and settings.get("pipeline") != current_settings.get("pipeline"):
        problems.append(
            f"{path / SETTINGS_FILE}: made by fingerprint pipeline {settings.get('pipeline')}, this lineage runs "
            f"pipeline {current_settings.get('pipeline')}: its references do not compare with new fingerprints; "
            "rebuild the pack"
        )
    return problems


def _file_stem(name: str, used: set[str]) -> str:
    stem = _SAFE.sub("_", name).strip("._") or "model"
    candidate, n = stem, 1
    while candidate.lower() in used:  # case-insensitive file systems
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate.lower())
    return candidate


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != PACK_FILE)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
