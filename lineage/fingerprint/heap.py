"""The C heap of a fingerprinting process: large blocks go back to the system when freed.

A fingerprint allocates thousands of response and probe buffers of a few hundred kilobytes to a few
megabytes (one set per weight matrix: thousands for a mixture of experts), with small allocations between
them. glibc serves a request above its mmap threshold (128 KB at start) with a fresh mapping, returned to
the system when freed; but the first time such a block is freed it raises the threshold to that block's
size (up to 32 MB), and from then on blocks below it come from the heap, where one small allocation above
them keeps the freed space from ever going back. On OLMoE-1B-7B's shape (`bench/bench_fingerprint.py
--shape olmoe`) the process's anonymous memory grew to 674 MB that way, against 206 MB with the threshold
fixed. `keep_heap_small` fixes it at 128 KB with `mallopt(M_MMAP_THRESHOLD)`, which also turns the raising
off; a fresh mapping per large block costs its page faults, a small price beside the products that fill it.

Other C libraries (musl, macOS) have no such call or no such growth: the function does nothing there.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD = 128 << 10  # glibc's own starting value, kept for good

_done: list[bool] = []


def keep_heap_small() -> bool:
    """Fix glibc's mmap threshold at 128 KB for this process (once; later calls return the first answer).

    Returns:
        True when the threshold is set (glibc), False where there is no such allocator.
    """
    if not _done:
        _done.append(_set_threshold())
    return _done[0]


def _set_threshold() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load, or one without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
