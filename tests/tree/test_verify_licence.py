"""`lineage verify` flags a model card's licence that differs from its base's (the reference's `license`
column), in its JSON and its ML-BOM."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest


def test_verify_flags_a_licence_other_than_the_bases(family: dict[str, Path], tree_cache: Path, tmp_path: Path) -> None:
    from lineage.jobs.options import ScanOptions
    from lineage.jobs.verify import verify_paths

    refs = tmp_path / "refs.csv"
    with refs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "path", "role", "family", "license", "hub_id"])
        w.writerow(["base", family["base"], "base", "tiny", "apache-2.0", "org/base"])
        w.writerow(["stranger", family["stranger"], "base", "other", "mit", "org/stranger"])
    card = family["coder"] / "README.md"
    options = ScanOptions(device="cpu", cache_dir=tree_cache)
    try:
        card.write_text("---\nbase_model: org/base\nlicense: mit\n---\n")
        flagged = verify_paths([family["coder"]], refs, options).outcomes[0]
        card.write_text("---\nbase_model: org/base\nlicense: Apache-2.0\n---\n")
        kept = verify_paths([family["coder"]], refs, options)
    finally:
        card.unlink()
    assert flagged.weights.derived_from == "base"
    assert flagged.to_dict()["license"] == "mit" and flagged.to_dict()["inherited_license"] == "apache-2.0"
    assert flagged.license_conflict is True
    assert kept.outcomes[0].license_conflict is False
    pytest.importorskip("cyclonedx")
    from lineage.verify.bom import to_cyclonedx

    bom = to_cyclonedx(kept)
    assert '"lineage:license_conflict"' in bom and '"lineage:inherited_license"' in bom
