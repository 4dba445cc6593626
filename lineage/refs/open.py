"""Opening a set of references: `builtin`, a reference pack folder, or a manifest CSV, resolved in one place.

Wherever lineage takes the known models (`--reference`, `--candidates`, the manifest of an evaluation) it
takes any of the three, and this module is the only one that tells them apart: `builtin` is the built-in
pack (`lineage.refs.builtin`, built on first use), a folder holding a `pack.json` is a pack (its files
checked against their sha256 first, `lineage.refs.pack`), and anything else is read as a manifest CSV
(`lineage.refs.manifest`). A model given where references are expected (a `.gguf`, a model folder, a
fingerprint file) is refused in one line saying what is taken.

A pack is used only through its check: its own `manifest.csv` given as a manifest is the pack (checked like
the folder), another file inside a pack is refused, and a folder laid out as a pack without its `pack.json`
(whose checksums are lost) is refused rather than read unchecked. Skipping the check (`verify=False`,
`--skip-pack-check`) is said in one `LineageWarning` line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lineage.errors import LineageWarning, ManifestError, PackError
from lineage.refs.builtin import BUILTIN_REFERENCE, ensure_builtin_pack
from lineage.refs.manifest import REFERENCE_SET_TAKES, Manifest, read_manifest
from lineage.refs.pack import FINGERPRINT_DIR, MANIFEST_FILE, PACK_FILE, is_pack, pack_manifest_path, pack_problems

_MODEL_SUFFIXES: dict[str, str] = {
    ".fingerprint.safetensors": "a fingerprint file",
    "_features.json": "a fingerprint file",
    ".gguf": "a GGUF model file",
    ".safetensors": "a safetensors weights file",
}


def open_references(
    source: str | Path | Manifest, *, verify: bool = True, require_references: bool = True
) -> Manifest:
    """The manifest of a reference set: `builtin`, a pack folder, a manifest CSV (or a manifest, as it is).

    Args:
        source: what was given.
        verify: check a pack's files against their sha256 first (`lineage.refs.pack.check_pack_files`).
        require_references: raise when no row is a reference (a set to classify against needs bases).

    Returns:
        The manifest; a pack's paths are its fingerprint files.

    Raises:
        ManifestError: not a manifest (a model given instead), or a bad one (see `read_manifest`).
        PackError: a pack of another format version, or whose files do not match their checksums.

    Example:
        >>> [r.name for r in open_references("builtin").references]  # doctest: +SKIP
        ['SmolLM2-135M-Instruct']
    """
    if isinstance(source, Manifest):
        return source
    return read_manifest(manifest_csv(source, verify=verify), require_references=require_references)


def reference_folder(source: str | Path) -> Path:
    """`source` as a path: for `builtin`, the built-in pack's folder (built first if it is not there yet)."""
    return ensure_builtin_pack() if str(source) == BUILTIN_REFERENCE else Path(source)


def manifest_csv(source: str | Path, *, verify: bool = True) -> Path:
    """The CSV file a reference set reads from: the built-in pack's or a pack's manifest, or `source` itself.

    Raises:
        ManifestError: a model or a folder that is neither a pack nor holds one, given instead.
        PackError: see `open_references`.
    """
    path = reference_folder(source)
    pack = _pack_of(path)
    if pack is not None:
        if not verify:
            warnings.warn(
                f"{pack}: reference pack used without checking its files' sha256 (--skip-pack-check): a file "
                "changed since it was built goes unseen",
                LineageWarning,
                stacklevel=2,
            )
        return pack_manifest_path(pack, verify=verify)  # a reference pack is a manifest of fingerprint files
    kind = next((k for s, k in _MODEL_SUFFIXES.items() if path.name.endswith(s)), None)
    if kind is None and path.is_dir():
        from lineage.io.discover import is_model_folder

        if not is_model_folder(path):
            raise ManifestError(f"{path}: is a folder; give the manifest CSV inside it ({REFERENCE_SET_TAKES})")
        kind = "a model folder"
    if kind is not None:
        raise ManifestError(
            f"{path}: is {kind}, not a manifest; {REFERENCE_SET_TAKES} (list models in a CSV with a path column)"
        )
    return path


def _pack_of(path: Path) -> Path | None:
    """The pack folder `path` stands for (the folder itself, or its own manifest), or None when it is no pack.

    Raises:
        PackError: a file inside a pack that is not its manifest, or a pack's layout without its `pack.json`.
    """
    if path.is_dir():
        if is_pack(path):
            return path
        if (path / MANIFEST_FILE).is_file() and (path / FINGERPRINT_DIR).is_dir():
            raise _no_pack_file(path)
        return None
    for above in path.resolve().parents:
        if is_pack(above):
            if path.name == MANIFEST_FILE and path.resolve().parent == above:
                return above
            raise PackError(f"{path}: is inside the reference pack {above}; give the pack folder itself")
    if path.name == MANIFEST_FILE and (path.parent / FINGERPRINT_DIR).is_dir():
        raise _no_pack_file(path.parent)
    return None


def _no_pack_file(folder: Path) -> PackError:
    return PackError(
        f"{folder}: is laid out as a reference pack but has no {PACK_FILE}, so its files cannot be checked; "
        "rebuild it (`lineage refs build`)"
    )


def verify_pack(source: str | Path, current_settings: dict | None = None) -> list[str]:
    """Check a pack folder, or `builtin`, thoroughly (`lineage.refs.pack.pack_problems`): one line per problem.

    Args:
        source: the pack folder, or `builtin`.
        current_settings: this lineage's probe settings; when given, a pack of another pipeline is reported.

    Returns:
        The problems; empty when the pack is sound.
    """
    return pack_problems(reference_folder(source), current_settings)
