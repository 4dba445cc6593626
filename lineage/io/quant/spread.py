"""Serial torch kernels spread over the threads torch may use.

Two steps of dequantising a packed format run on one core whatever the size of torch's pool: `index_select`
of a 1-D table (its CPU kernel is a plain loop) and the blocked copy that transposes a matrix. Every other step
(widening, products) is a parallel region that takes the whole pool, so on a 2-core machine the second core
waited through these two. Torch lets go of the GIL inside its kernels: the same kernel called on disjoint
slices from as many Python threads as torch has threads runs on that many cores. Only serial kernels are
spread: a parallel one called from a helper thread would start a second OpenMP team beside the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

import torch

_POOL: dict[str, object] = {}  # the helper threads of this process (a forked child starts its own)


def ways(work: int, least: int = 1 << 16) -> int:
    """Into how many slices to cut `work` items: torch's thread count, fewer where a slice would hold under
    `least` (handing a slice to a thread costs about ten microseconds)."""
    return max(1, min(torch.get_num_threads(), work // least))


def bounds(total: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """`[start, stop)` of at most `parts` consecutive slices covering `total` items, each a whole number of
    `multiple` long but the last."""
    step = -(-total // max(1, parts))
    step = max(multiple, -(-step // multiple) * multiple)
    return [(a, min(total, a + step)) for a in range(0, total, step)]


def spread(calls: list[Callable[[], object]]) -> None:
    """Run `calls`: the first on this thread, the others on helper threads; return when all are done.

    Raises:
        Whatever a call raised (the first call's error first), once every call has ended.
    """
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    futures = [_pool(len(calls) - 1).submit(call) for call in calls[1:]]
    try:
        calls[0]()
    finally:
        wait(futures)  # no slice is still being written when this returns or raises
    for future in futures:
        future.result()


def _pool(workers: int) -> ThreadPoolExecutor:
    if _POOL.get("pid") != os.getpid() or _POOL["workers"] < workers:  # type: ignore[operator]
        if _POOL.get("pid") == os.getpid():
            _POOL["pool"].shutdown(wait=False)  # type: ignore[union-attr]
        _POOL.update(pid=os.getpid(), workers=workers,
                     pool=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lineage-dequant"))  # fmt: skip
    return _POOL["pool"]  # type: ignore[return-value]
