"""A reference pack keeps its references' `license` column (what their derivatives inherit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.tree.synthetic import base


def test_pack_keeps_the_license_column(tmp_path: Path) -> None:
    from lineage.refs.open import open_references
    from lineage.refs.pack import PackReference, write_pack

    rng = np.random.default_rng(0)
    refs = [PackReference("a", "fam", base("a", rng), license="llama3.2"), PackReference("b", "fam", base("b", rng))]
    pack = write_pack(refs, tmp_path / "refs.pack")
    rows = {r.name: r for r in open_references(pack).rows}
    assert rows["a"].license == "llama3.2" and rows["b"].license is None
