"""The C heap of a fingerprinting process: what a fingerprint freed goes back to the system.

A fingerprint allocates thousands of response and probe buffers of a few hundred kilobytes to a few
megabytes (one set per weight matrix: thousands for a mixture of experts), with small allocations between
them. glibc serves a request above its mmap threshold (128 KB at start) with a fresh mapping, returned to
the system when freed; but the first time such a block is freed it raises the threshold to that block's
size (up to 32 MB), and from then on blocks below it come from the heap, where one small allocation above
them keeps the freed space from going back. On OLMoE-1B-7B's shape (`bench/bench_fingerprint.py --shape
olmoe`) the process's anonymous memory grew to 674 MB that way, and it depends on the order of allocations,
not on the model's size alone.

`release_free_memory` calls glibc's `malloc_trim(0)`, which hands the free pages inside the heap back to
the system (their address space stays, so the heap keeps serving blocks fast); the pipeline calls it every
`TRIM_EVERY` weights. Fixing the threshold instead (`mallopt(M_MMAP_THRESHOLD)`) kept the memory down too
but made every large buffer a fresh mapping with its page faults: the 1B shape's fingerprint 10-15% slower.
Other C libraries (musl, macOS) have no such call: the function does nothing there.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

#: Weights streamed between two trims: a layer of a dense model, a few experts' worth of a mixture.
TRIM_EVERY = 32

_trim: list[Callable[[int], int] | None] = []


def release_free_memory() -> bool:
    """Give the heap's free pages back to the system (glibc's `malloc_trim(0)`).

    Returns:
        True when glibc did it, False where there is no such call.
    """
    if not _trim:
        _trim.append(_malloc_trim())
    trim = _trim[0]
    if trim is None:
        return False
    trim(0)  # 1 when memory went back, 0 when there was none to give: either way, done
    return True


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # no C library to load, or one without malloc_trim (musl)
        return None
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return trim
