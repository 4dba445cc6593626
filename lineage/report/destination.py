"""Where a command's `--out` goes, checked before any work, and written so that it never clobbers.

A scan can run for hours; finding out at the end that `--out` names a file, a folder that cannot be written,
or a reference pack (which the report's files would corrupt) wastes all of it. `check_out_folder` and
`check_out_file` say so first, in one line (`OutputError`), before a model is opened.

A report folder is replaced as a whole (`write_folder`): its files are written into a fresh temporary folder
beside it, which is then renamed into place, so a scan killed while it writes leaves the folder as it was
(the previous scan's files, or nothing), never new results beside an old page and a 0-byte picture. An
existing folder is replaced only when it is empty or holds nothing but a previous report's files
(`REPORT_FILES`); any other folder (a reference pack, a folder of models, a home directory) is refused unless
`force`, and then the report's files are moved into it one by one, its other files left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lineage.errors import OutputError
from lineage.refs.pack import PACK_FILE

#: Every file a report folder of `scan`, `classify` or `distance` may hold (`lineage.report.writers`).
SCAN_FILES: frozenset[str] = frozenset(
    {
        "results.csv", "results.parquet", "results.json", "distances.csv", "distances.parquet", "summary.json",
        "map.png", "heatmap.png", "report.html",
    }
)  # fmt: skip
TREE_FILES: frozenset[str] = frozenset({"tree.json", "tree.png", "tree.svg", "report.html"})
REPORT_FILES: frozenset[str] = SCAN_FILES | TREE_FILES  # a previous report of either kind may be replaced
REPORT_FOLDERS: frozenset[str] = frozenset({"model-cards"})  # `lineage tree`'s model-card snippets


def check_out_folder(path: str | Path, *, force: bool = False) -> Path:
    """Check, before any work, that a report folder can be written at `path`.

    Args:
        path: the folder asked for.
        force: allow a folder that holds other files than a previous report's (the report's files go beside them).

    Returns:
        `path`.

    Raises:
        OutputError: `path` is a file, a folder that holds other files (a reference pack, say) without
            `force`, or it cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "is a file; --out takes a folder (give a new folder's path)")
    if path.is_dir():
        if (path / PACK_FILE).is_file() and not force:
            raise OutputError(path, "is a reference pack; a report written into it would corrupt it: give a new folder")
        others = foreign_files(path)
        if others and not force:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise OutputError(
                path, f"holds files that are not a previous report's ({shown}); give a new folder, or --force to "
                "write the report's files into it"
            )  # fmt: skip
        _check_writable(path)
    _check_writable(_existing_parent(path))
    return path


def check_files_folder(path: str | Path) -> Path:
    """Check, before any work, that `path` is a folder files can be added to (or can be created): for
    `lineage fingerprint --out DIR`, whose files go beside whatever the folder holds.

    Raises:
        OutputError: `path` is a file, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(path, "is a file; --out takes a folder (give a new folder's path)")
    _check_writable(path if path.is_dir() else _existing_parent(path))
    return path


def check_out_file(path: str | Path, *, force: bool = False) -> Path:
    """Check, before any work, that the file `path` can be written (and, without `force`, does not exist).

    Raises:
        OutputError: `path` is a folder, exists (without `force`), or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a folder; --out takes a file here (give the file's path)")
    if path.exists() and not force:
        raise OutputError(path, "exists already; give a new file, or --force to replace it")
    _check_writable(_existing_parent(path))
    return path


def write_file(path: str | Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file beside it and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_folder(path: str | Path, write: Callable[[Path], list[Path]], *, force: bool = False) -> list[Path]:
    """Write a report folder as a whole: `write(tmp)` fills a fresh folder beside `path`, which then replaces it.

    Args:
        path: the report folder (checked by `check_out_folder`).
        write: writes the report's files into the folder it is given; returns them.
        force: `path` may hold other files: the report's are moved into it, the others left alone.

    Returns:
        The files, at their final place.
    """
    path = Path(path)
    check_out_folder(path, force=force)  # again: the folder may have changed while the scan ran
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        written = [path / f.relative_to(tmp) for f in write(tmp)]
        if path.is_dir() and foreign_files(path):  # only with force: leave what is not ours alone
            for name in REPORT_FILES:
                (path / name).unlink(missing_ok=True)  # a previous report's file this one does not write
            for name in REPORT_FOLDERS:
                if (path / name).is_dir():
                    shutil.rmtree(path / name)
            for f in sorted(tmp.iterdir()):
                os.replace(f, path / f.name)
            tmp.rmdir()
        elif path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)  # two renames: a reader sees the old report or the new one
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def foreign_files(folder: Path) -> list[str]:
    """The names in `folder` that are not a report's files (sorted)."""
    return sorted(
        p.name for p in folder.iterdir()
        if not (p.name in REPORT_FILES and p.is_file() or p.name in REPORT_FOLDERS and p.is_dir())
    )  # fmt: skip


def _existing_parent(path: Path) -> Path:
    """The nearest folder above `path` that exists (where a new folder or file would be created)."""
    for above in Path(os.path.abspath(path)).parents:
        if above.exists():
            if not above.is_dir():
                raise OutputError(above, f"is a file, so {path} cannot be created under it")
            return above
    return Path("/")


def _check_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(folder, "is not writable; give an --out where this user may write")
