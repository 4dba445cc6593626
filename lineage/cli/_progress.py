"""Progress bars on stderr (tqdm), off when asked or when stderr is not a terminal and CI is set."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from tqdm import tqdm


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr; disabled with --quiet or LINEAGE_NO_PROGRESS=1."""
    off = disable or bool(os.environ.get("LINEAGE_NO_PROGRESS"))
    return tqdm(total=total, desc=desc, unit="model", file=sys.stderr, disable=off, leave=False, dynamic_ncols=True)


def ticker(bar: tqdm) -> Callable[[int, int, str], None]:
    """A library progress callback `(done, total, name)` that advances `bar` (the total is known only once the
    paths are expanded, so it is set on every call)."""

    def tick(done: int, total: int, name: str) -> None:
        bar.total = total
        bar.set_postfix_str(name[:40], refresh=False)
        bar.update(1)

    return tick
