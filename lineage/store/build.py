"""Filling a store from the fingerprint cache or from folders of fingerprint files, incrementally.

Each source fingerprint is loaded once, turned into its compact vector and appended; rows are committed in
batches, and a source key already in the store is skipped, so building again after new scans adds only the
new fingerprints. Fingerprints made with other probe settings than the store's (another seed, another
pipeline) would not compare: they are left out and counted, as are unreadable files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lineage.errors import FingerprintFormatError, StoreError
from lineage.fingerprint.format import FINGERPRINT_SUFFIX, load_fingerprint
from lineage.refs.pack import probe_settings
from lineage.store.embed import Embedder, EmbeddingOptions, layout_of
from lineage.store.store import StoreWriter

_CACHE_ENTRIES = "by-key"  # lineage.fingerprint.cache's layout: by-key/<2 hex>/<key>.fingerprint.safetensors
BATCH = 1024


@dataclass
class BuildReport:
    """What `build_store` did.

    Attributes:
        added: rows appended.
        present: sources skipped because their key was already in the store.
        incompatible: sources left out (no sketches, other probe settings, unreadable), every one named in
            `notes` (`<file>: <why>`): no source is dropped without a line saying so.
        total: rows in the store afterwards.
    """

    added: int = 0
    present: int = 0
    incompatible: int = 0
    total: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.incompatible += 1
        self.notes.append(text)


def fingerprint_sources(paths: Sequence[str | Path]) -> Iterator[tuple[str, Path]]:
    """`(key, file)` for every fingerprint under the given paths.

    A fingerprint cache folder (`$LINEAGE_CACHE`) gives its entries keyed by cache key; any other folder its
    `*.fingerprint.safetensors` files at any depth, keyed by absolute path; a file itself.

    Raises:
        StoreError: a path does not exist.
    """
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise StoreError(f"{path}: no such file or folder")
        if path.is_file():
            yield str(path.resolve()), path
        elif (path / _CACHE_ENTRIES).is_dir():
            for file in sorted((path / _CACHE_ENTRIES).glob(f"*/*{FINGERPRINT_SUFFIX}")):
                yield file.name[: -len(FINGERPRINT_SUFFIX)], file
        else:
            for file in sorted(path.rglob(f"*{FINGERPRINT_SUFFIX}")):
                yield str(file.resolve()), file


def build_store(
    sources: Sequence[str | Path],
    out: str | Path,
    embedding: EmbeddingOptions | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> BuildReport:
    """Add every fingerprint under `sources` to the store `out` (created when absent).

    Args:
        sources: cache folders, folders of fingerprint files, or files.
        out: the store folder.
        embedding: embedding options for a new store (an existing one keeps its own).
        progress: called as `progress(seen, name)` after each source.

    Returns:
        The counts.

    Raises:
        StoreError: `out` is not a store, or a source path is missing.
    """
    report = BuildReport()
    with StoreWriter(out, embedding) as writer:
        present = writer.keys()
        embedder = Embedder(writer.info.embedding)
        names: list[str] = []
        keys: list[str] = []
        vectors, layouts = [], []
        for seen, (key, file) in enumerate(fingerprint_sources(sources), start=1):
            if key in present:
                report.present += 1
            else:
                try:
                    fp = load_fingerprint(file)
                except FingerprintFormatError as exc:
                    report.note(str(exc))
                    fp = None
                if fp is not None and not fp.has_sketches:
                    report.note(f"{file}: no lineage sketches (a published feature file)")
                elif fp is not None and not writer.check_settings(probe_settings(fp)):
                    report.note(f"{file}: other probe settings than the store's")
                elif fp is not None:
                    names.append(fp.name)
                    keys.append(key)
                    vectors.append(embedder.embed(fp))
                    layouts.append(writer.layout_index(layout_of(fp)))
                    present.add(key)
            if len(names) >= BATCH:
                writer.append(names, keys, vectors, layouts)
                report.added += len(names)
                names, keys, vectors, layouts = [], [], [], []
            if progress is not None:
                progress(seen, file.name)
        if names:
            writer.append(names, keys, vectors, layouts)
            report.added += len(names)
        report.total = writer.info.count
    return report
