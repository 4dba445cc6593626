"""Progress bars on stderr (tqdm), off when asked or when stderr is not a terminal and CI is set."""

from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar on stderr; disabled with --quiet or LINEAGE_NO_PROGRESS=1."""
    off = disable or bool(os.environ.get("LINEAGE_NO_PROGRESS"))
    return tqdm(total=total, desc=desc, unit="model", file=sys.stderr, disable=off, leave=False, dynamic_ncols=True)
