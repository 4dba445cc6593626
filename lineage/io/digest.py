"""The sha256 of weight files, read in full at disk speed (what `--verify-weights` keys the cache by).

sha256, not blake2b: measured on the 2-core machine this project runs on (`python bench/bench_digest.py`),
hashlib's sha256 is at least as fast as its blake2b, and it is the digest the Hugging Face hub records for
every LFS file (its `oid`), so a local file's digest is the one a hub listing shows. Files are read in 8 MB
blocks into one reused buffer, several files at once on threads (hashlib lets go of the GIL while it
hashes), so a sharded checkpoint hashes at the speed of the disk or of the cores, whichever is slower.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lineage.errors import CheckpointError

_BLOCK = 8 << 20


def file_sha256(path: str | Path) -> str:
    """The sha256 of one file's bytes (hex).

    Raises:
        CheckpointError: the file cannot be read.
    """
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file to hash it ({exc.strerror or exc})") from None
    return h.hexdigest()


def files_sha256(paths: Sequence[str | Path]) -> list[str]:
    """`file_sha256` of each file, in order, hashed on up to as many threads as there are cores."""
    if len(paths) <= 1:
        return [file_sha256(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(len(paths), os.cpu_count() or 1)) as pool:
        return list(pool.map(file_sha256, paths))
