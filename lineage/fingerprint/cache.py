"""The fingerprint cache: fingerprint a model once, load it ever after.

Entries are ordinary fingerprint files named by a cache key (`lineage.fingerprint.pipeline.cache_key`: a
hash of the model's headers, file sizes and times, the probe settings and the lineage version; for a hub
model `lineage.fingerprint.hub.hub_cache_key`, of its commit), so a second scan with nothing changed
fingerprints nothing, and any change to the model or the settings misses the cache instead of returning a
stale answer. The key only needs the headers, so computing it costs a few reads, not a pass over the
weights. Writes are atomic (`save_fingerprint` writes a uniquely named temporary file in the same folder,
then renames it over the entry), so scans and workers sharing one cache never see, or leave, a half-written
entry; a corrupt entry counts as a miss and is overwritten: a cache must never be the reason a scan fails.

Default folder: `$LINEAGE_CACHE`, else `~/.cache/lineage` (see `lineage.fingerprint.paths.default_cache_dir`).
When the cache is read and written is `lineage.fingerprint.obtain`'s to say.
"""

from __future__ import annotations

from pathlib import Path

from lineage.errors import FingerprintFormatError
from lineage.fingerprint.format import Fingerprint, load_fingerprint, save_fingerprint
from lineage.fingerprint.paths import default_cache_dir
from lineage.io.constants import FINGERPRINT_SUFFIX

_ENTRIES = "by-key"


class FingerprintCache:
    """Fingerprint files in a folder, addressed by cache key.

    Args:
        folder: the cache folder (created on first write); the default folder when None.

    Example:
        >>> cache = FingerprintCache("/tmp/lineage-cache")
        >>> cache.get("0" * 64) is None
        True
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path_for(self, key: str) -> Path:
        """Where the entry for `key` lives (two-level fan-out keeps folders small on big scans)."""
        if len(key) < 3 or not key.isalnum():
            raise ValueError(f"not a cache key: {key!r}")
        return self.folder / _ENTRIES / key[:2] / f"{key}{FINGERPRINT_SUFFIX}"

    def get(self, key: str) -> Fingerprint | None:
        """The cached fingerprint for `key`, or None (absent or unreadable)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return load_fingerprint(path)
        except FingerprintFormatError:
            return None  # corrupt or of an older schema: recompute and overwrite

    def put(self, key: str, fp: Fingerprint) -> Path:
        """Store `fp` under `key`; returns the file written."""
        return save_fingerprint(fp, self.path_for(key))

    def put_missing(self, key: str, fp: Fingerprint) -> None:
        """Store `fp` under `key` unless an entry is there (a worker sharing this cache wrote it already)."""
        if not self.path_for(key).is_file():
            self.put(key, fp)

    def __len__(self) -> int:
        root = self.folder / _ENTRIES
        return sum(1 for _ in root.glob(f"*/*{FINGERPRINT_SUFFIX}")) if root.is_dir() else 0
