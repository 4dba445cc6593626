"""The fingerprint store: a million compact vectors in one memory-mapped file, built incrementally.

A scan of a hub's uploads leaves a million fingerprint files in the cache; opening them one by one costs a
file open, a header parse and megabytes of sketches each. The store keeps what classification needs, the
compact vector of each (`lineage.store.embed`), in one folder:

    STORE/
      store.json     format version, count, dimension, embedding options, probe settings, anchor layouts
      vectors.f16    float16 `[count, dim]`, row-major, memory-mapped for reading
      layouts.u16    uint16 `[count]`: each row's anchor layout (an index into store.json's layouts)
      names.txt      one model name per row
      keys.txt       one source key per row (the cache key, or the fingerprint file's path)

Rows are appended; `store.json` is rewritten (atomically, by rename) after each batch and its `count` is the
truth, so an interrupted build leaves a valid store of the rows it had committed, and the next build skips
the keys already present and carries on. float16 halves the file and the page-cache traffic; its 1e-3
relative rounding is far below the projection noise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lineage import __version__
from lineage.errors import StoreError
from lineage.io.jsonfile import read_folder_document
from lineage.store.embed import EmbeddingOptions

STORE_FORMAT = "lineage-fingerprint-store"
STORE_VERSION = 1
STORE_FILE = "store.json"
VECTORS_FILE = "vectors.f16"
LAYOUTS_FILE = "layouts.u16"
NAMES_FILE = "names.txt"
KEYS_FILE = "keys.txt"
MAX_LAYOUTS = 65535


@dataclass
class StoreInfo:
    """What `store.json` holds.

    Attributes:
        count: committed rows.
        embedding: the embedding options the vectors were made with.
        settings: the probe settings every fingerprint in the store shares (None until the first row).
        layouts: the distinct anchor layouts (`lineage.store.embed.layout_of`), indexed by `layouts.u16`.
    """

    count: int
    embedding: EmbeddingOptions
    settings: dict | None
    layouts: list[dict]

    def to_dict(self) -> dict:
        return {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "lineage_version": __version__,
            "count": self.count,
            "embedding": self.embedding.to_dict(),
            "settings": self.settings,
            "layouts": self.layouts,
        }


def read_store_info(folder: str | Path) -> StoreInfo:
    """Read and check `store.json`.

    Raises:
        StoreError: missing, unreadable, or of another format or version.
    """
    file = Path(folder) / STORE_FILE
    doc = read_folder_document(
        folder, STORE_FILE, StoreError, kind="fingerprint store", form=STORE_FORMAT, version=STORE_VERSION,
        build="lineage store build",
    )  # fmt: skip
    try:
        emb = doc["embedding"]
        options = EmbeddingOptions(dim=int(emb["dim"]), depth_bins=int(emb["depth_bins"]), seed=int(emb["seed"]))
        if emb.get("version") != options.to_dict()["version"]:
            raise StoreError(f"{file}: vectors of embedding version {emb.get('version')}: rebuild the store")
        return StoreInfo(int(doc["count"]), options, doc.get("settings"), list(doc.get("layouts") or []))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{file}: malformed ({exc})") from None


class StoreWriter:
    """Appends rows to a store folder (created when absent).

    Args:
        folder: the store folder.
        embedding: options for a new store; an existing store keeps its own (a mismatch is an error).

    Example:
        >>> with StoreWriter("fps.store") as w:  # doctest: +SKIP
        ...     w.append(["m1"], ["key1"], vectors, [w.layout_index(layout)])
    """

    def __init__(self, folder: str | Path, embedding: EmbeddingOptions | None = None) -> None:
        self.folder = Path(folder)
        if (self.folder / STORE_FILE).is_file():
            self.info = read_store_info(self.folder)
            if embedding is not None and embedding != self.info.embedding:
                raise StoreError(f"{self.folder}: holds vectors of other embedding options ({self.info.embedding})")
        else:
            if self.folder.exists() and any(self.folder.iterdir()):
                raise StoreError(f"{self.folder}: exists and is not a store; give a new folder")
            self.folder.mkdir(parents=True, exist_ok=True)
            self.info = StoreInfo(0, embedding or EmbeddingOptions(), None, [])
        self._layout_ids = {json.dumps(lay, sort_keys=True): i for i, lay in enumerate(self.info.layouts)}
        self._truncate()
        self._commit()

    @property
    def dim(self) -> int:
        return self.info.embedding.dim

    def keys(self) -> set[str]:
        """The source keys already in the store (to skip on an incremental build)."""
        return set(_read_lines(self.folder / KEYS_FILE, self.info.count))

    def layout_index(self, layout: dict) -> int:
        """The index of an anchor layout, registering it when new."""
        key = json.dumps(layout, sort_keys=True)
        if key not in self._layout_ids:
            if len(self._layout_ids) >= MAX_LAYOUTS:
                raise StoreError(f"{self.folder}: more than {MAX_LAYOUTS} anchor layouts")
            self._layout_ids[key] = len(self.info.layouts)
            self.info.layouts.append(layout)
        return self._layout_ids[key]

    def check_settings(self, settings: dict) -> bool:
        """Whether fingerprints of these probe settings belong here (the first row fixes them)."""
        if self.info.settings is None:
            self.info.settings = dict(settings)
            return True
        return self.info.settings == settings

    def append(self, names: list[str], keys: list[str], vectors: np.ndarray, layouts: Iterable[int]) -> None:
        """Append rows and commit them.

        Raises:
            StoreError: a name or key holds a line break, or shapes disagree.
        """
        vectors = np.asarray(vectors, dtype=np.float16)
        layouts = np.asarray(list(layouts), dtype=np.uint16)
        if (
            vectors.ndim != 2
            or vectors.shape[1] != self.dim
            or not (len(names) == len(keys) == len(vectors) == len(layouts))
        ):
            raise StoreError(f"{self.folder}: rows of shape {vectors.shape} do not fit a store of dimension {self.dim}")
        if any("\n" in s or "\r" in s for s in (*names, *keys)):
            raise StoreError(f"{self.folder}: a model name or key holds a line break")
        with (self.folder / VECTORS_FILE).open("ab") as fh:
            fh.write(np.ascontiguousarray(vectors).tobytes())
        with (self.folder / LAYOUTS_FILE).open("ab") as fh:
            fh.write(layouts.astype("<u2").tobytes())
        with (self.folder / NAMES_FILE).open("a", encoding="utf-8", newline="\n") as fh:
            fh.write("".join(f"{n}\n" for n in names))
        with (self.folder / KEYS_FILE).open("a", encoding="utf-8", newline="\n") as fh:
            fh.write("".join(f"{k}\n" for k in keys))
        self.info.count += len(names)
        self._commit()

    def close(self) -> None:
        self._commit()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _commit(self) -> None:
        tmp = self.folder / f"{STORE_FILE}.tmp"
        tmp.write_text(json.dumps(self.info.to_dict(), sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / STORE_FILE)

    def _truncate(self) -> None:
        """Cut what an interrupted append wrote past the committed count."""
        n, dim = self.info.count, self.dim
        for name, size in ((VECTORS_FILE, n * dim * 2), (LAYOUTS_FILE, n * 2)):
            path = self.folder / name
            if not path.exists():
                path.touch()
            if path.stat().st_size < size:
                raise StoreError(f"{path}: shorter than the {n} rows store.json commits: the store is damaged")
            if path.stat().st_size > size:
                os.truncate(path, size)
        for name in (NAMES_FILE, KEYS_FILE):
            path = self.folder / name
            lines = _read_lines(path, n) if path.exists() else []
            if len(lines) < n:
                raise StoreError(f"{path}: fewer than the {n} rows store.json commits: the store is damaged")
            path.write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")


class Store:
    """A store opened for reading: vectors memory-mapped, names read on demand.

    Args:
        folder: the store folder.

    Raises:
        StoreError: not a store, or its files are shorter than its committed count.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.info = read_store_info(self.folder)
        n, dim = self.info.count, self.info.embedding.dim
        for name, size in ((VECTORS_FILE, n * dim * 2), (LAYOUTS_FILE, n * 2)):
            path = self.folder / name
            if not path.is_file() or path.stat().st_size < size:
                raise StoreError(f"{path}: missing or shorter than the {n} rows store.json commits")
        empty = n == 0
        self.vectors = (
            np.zeros((0, dim), np.float16)
            if empty
            else np.memmap(self.folder / VECTORS_FILE, "<f2", "r", shape=(n, dim))
        )
        self.layouts = (
            np.zeros(0, np.uint16) if empty else np.memmap(self.folder / LAYOUTS_FILE, "<u2", "r", shape=(n,))
        )

    def __len__(self) -> int:
        return self.info.count

    def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows `[start, stop)` as float32 vectors and their layout ids, read with plain file reads.

        A sweep over the whole store goes through here rather than through the memory map: pages read by a
        map count in the process's resident memory until the OS evicts them, a read buffer is freed at once,
        so a sweep of any size stays within a block's memory.
        """
        dim = self.info.embedding.dim
        stop = min(stop, self.info.count)
        with (self.folder / VECTORS_FILE).open("rb") as fh:
            fh.seek(start * dim * 2)
            raw = fh.read((stop - start) * dim * 2)
        with (self.folder / LAYOUTS_FILE).open("rb") as fh:
            fh.seek(start * 2)
            lay = np.frombuffer(fh.read((stop - start) * 2), dtype="<u2")
        return np.frombuffer(raw, dtype="<f2").reshape(stop - start, dim).astype(np.float32), lay

    def names(self) -> list[str]:
        """The model name of every row."""
        return _read_lines(self.folder / NAMES_FILE, self.info.count)

    def keys(self) -> list[str]:
        """The source key of every row."""
        return _read_lines(self.folder / KEYS_FILE, self.info.count)


def _read_lines(path: Path, count: int) -> list[str]:
    if count == 0:
        return []
    with path.open("r", encoding="utf-8", newline="\n") as fh:
        lines = fh.read().split("\n")
    return lines[:count]
