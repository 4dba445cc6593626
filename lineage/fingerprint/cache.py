"""The fingerprint cache: fingerprint a model once, load it ever after, and trust no entry unchecked.

Entries are ordinary fingerprint files named by a cache key (`lineage.fingerprint.pipeline.model_identity`:
a hash of the model's headers, file sizes and times, the probe settings and the lineage version; with
`verify_weights`, of the sha256 of every weight file instead of their sizes and times; for a hub model
`lineage.fingerprint.hub.hub_cache_key`, of its commit), so a second scan with nothing changed fingerprints
nothing, and any change to the model or the settings misses the cache instead of returning a stale answer.

An entry is sealed (`put`): its header carries the key it was written under, the digest of the model's
headers it was made from, and a sha256 of its own fingerprint bytes. `get` checks all three and that every
number is finite, on every use: a flipped bit, a NaN, a truncated file, an entry copied over another's or
filed under another model's key is a miss, said in one `LineageWarning` line, and the model is fingerprinted
again (and the entry overwritten). The seal guards against damage and mix-ups, not against someone who may
write to the cache and recomputes the seal: the cache is trusted as far as its folder is.

Writes are atomic (`lineage.fingerprint.format.write_atomically`: a uniquely named temporary file in the same
folder, then a rename), so scans and workers sharing one cache never see, or leave, a half-written entry. A
cache must never be the reason a scan fails: an entry that cannot be written is a warning, not an error.

Default folder: `$LINEAGE_CACHE`, else `~/.cache/lineage` (see `lineage.fingerprint.paths.default_cache_dir`).
When the cache is read and written is `lineage.fingerprint.obtain`'s to say.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np

from lineage.errors import CacheError, FingerprintFormatError, LineageWarning
from lineage.fingerprint.format import (
    Fingerprint,
    fingerprint_bytes,
    fingerprint_from_bytes,
    header_metadata,
    save_fingerprint,
)
from lineage.fingerprint.paths import default_cache_dir
from lineage.io.constants import FINGERPRINT_SUFFIX

_ENTRIES = "by-key"
#: The header metadata key of an entry's seal (beside the fingerprint's own `lineage` key).
SEAL_KEY = "lineage_cache"


class FingerprintCache:
    """Fingerprint files in a folder, addressed by cache key, each sealed and checked on every read.

    Args:
        folder: the cache folder (created on first write); the default folder when None.
        verify_weights: key local models by the sha256 of their weight bytes (read in full to look an entry
            up), not by their files' sizes and times: a file replaced by another of the same size and time
            (`cp -p`, `rsync -a`, tar) is never answered from the cache.

    Raises:
        CacheError: a file stands where the folder (or one above it) should be.

    Example:
        >>> cache = FingerprintCache("/tmp/lineage-cache")
        >>> cache.get("0" * 64) is None
        True
    """

    def __init__(self, folder: str | Path | None = None, *, verify_weights: bool = False) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.verify_weights = verify_weights
        for above in (self.folder, *self.folder.parents):
            if above.exists():
                if not above.is_dir():
                    raise CacheError(
                        above, "is a file, not a folder: the fingerprint cache needs a folder (--cache DIR or "
                        "$LINEAGE_CACHE)"
                    )  # fmt: skip
                break

    def path_for(self, key: str) -> Path:
        """Where the entry for `key` lives (two-level fan-out keeps folders small on big scans)."""
        if len(key) < 3 or not key.isalnum():
            raise ValueError(f"not a cache key: {key!r}")
        return self.folder / _ENTRIES / key[:2] / f"{key}{FINGERPRINT_SUFFIX}"

    def get(self, key: str, model: str | None = None, *, warn: bool = True) -> Fingerprint | None:
        """The cached fingerprint for `key`, or None (absent, or failing its check).

        Args:
            key: the cache key.
            model: the digest of the headers of the model asked about (`Checkpoint.header_sha256`); the entry
                must have been made from those headers. None checks the key alone (a hub model's).
            warn: say in a `LineageWarning` why an entry that is there is not used.
        """
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._refused(path, f"unreadable ({exc.strerror or exc})", warn)
        fp, problem = check_entry(data, key, model, path)
        return fp if problem is None else self._refused(path, problem, warn)

    def put(self, key: str, fp: Fingerprint, model: str | None = None) -> Path | None:
        """Store `fp` under `key`, sealed (see the module docstring); returns the file written, or None when it
        could not be written (said in a `LineageWarning`: the fingerprint is then just not cached)."""
        body = fingerprint_bytes(fp)
        seal = {"key": key, "model": model or "", "sha256": _digest(body, key, model)}
        path = self.path_for(key)
        try:
            return save_fingerprint(fp, path, {SEAL_KEY: json.dumps(seal, sort_keys=True)})
        except OSError as exc:
            warnings.warn(
                f"{path}: cannot write the cache entry ({exc.strerror or exc}); the fingerprint is not cached",
                LineageWarning,
                stacklevel=2,
            )
            return None

    def put_missing(self, key: str, fp: Fingerprint, model: str | None = None) -> None:
        """Store `fp` under `key` unless a sound entry is there (a worker sharing this cache wrote it already)."""
        if self.get(key, model, warn=False) is None:
            self.put(key, fp, model)

    def __len__(self) -> int:
        root = self.folder / _ENTRIES
        return sum(1 for _ in root.glob(f"*/*{FINGERPRINT_SUFFIX}")) if root.is_dir() else 0

    @staticmethod
    def _refused(path: Path, problem: str, warn: bool) -> None:
        if warn:
            message = f"{path}: cache entry {problem}; fingerprinting the model again"
            warnings.warn(message, LineageWarning, stacklevel=3)
        return None


def check_entry(
    data: bytes, key: str, model: str | None, origin: str | Path = "<cache entry>"
) -> tuple[Fingerprint | None, str | None]:
    """`(fingerprint, None)` when `data` is a sound entry for `key` (and `model`), else `(None, the problem)`."""
    seal_text = header_metadata(data).get(SEAL_KEY)
    try:
        fp = fingerprint_from_bytes(data, origin)
    except FingerprintFormatError:
        return None, "damaged (not a readable fingerprint file: truncated or corrupt)"
    try:
        seal = json.loads(seal_text) if seal_text is not None else None
    except json.JSONDecodeError:
        seal = None
    if not isinstance(seal, dict) or not all(isinstance(seal.get(k), str) for k in ("key", "model", "sha256")):
        return None, "damaged (no readable seal)"
    if seal["sha256"] != _digest(fingerprint_bytes(fp), seal["key"], seal["model"] or None):
        return None, "damaged (its bytes do not match its own sha256)"
    if seal["key"] != key:
        return None, "filed under another key (an entry copied or moved over this one)"
    made_for = {seal["model"], fp.summary.header_sha256 if fp.summary is not None else ""} - {""}
    if model is not None and made_for != {model}:
        return None, "made for another model (its headers' digest is not this model's)"
    bad = _non_finite(fp)
    if bad is not None:
        return None, f"damaged ({bad} holds NaN/Inf)"
    return fp, None


def _digest(body: bytes, key: str, model: str | None) -> str:
    return hashlib.sha256(b"\0".join((body, key.encode(), (model or "").encode()))).hexdigest()


def _non_finite(fp: Fingerprint) -> str | None:
    """What in `fp` is not finite, or None."""
    for name, value in fp.tensorguard.items():
        if not math.isfinite(value):
            return f"feature '{name}'"
    for kind, arrays in (("sketch", fp.sketches), ("response", fp.responses), ("identity response", fp.identity)):
        for name, arr in arrays.items():
            if not np.isfinite(arr).all():
                return f"{kind} '{name}'"
    return None
