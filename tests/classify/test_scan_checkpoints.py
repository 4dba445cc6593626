"""End to end on real (tiny) checkpoints: fingerprint through the pipeline, cache, sketch distances."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.jobs.scan import ScanOptions, scan

from .synth import tiny_llama, write_manifest, write_tiny_model


@pytest.fixture(scope="module")
def tiny_catalog(tmp_path_factory) -> Path:
    """Three unrelated tiny bases, a fine-tune of each, one outsider, one corrupt folder."""
    root = tmp_path_factory.mktemp("tiny-catalog")
    rows = []
    for seed, family in enumerate(("llama", "qwen", "gemma")):
        base = tiny_llama(seed)
        write_tiny_model(root / f"{family}-base", base)
        write_tiny_model(root / f"{family}-ft", tiny_llama(100 + seed, parent=base))
        rows += [
            {"name": f"{family}-base", "path": f"{family}-base", "family": family, "role": "base"},
            {"name": f"{family}-ft", "path": f"{family}-ft", "family": family, "base": f"{family}-base",
             "role": "derivative", "derivation": "finetune"},
        ]  # fmt: skip
    write_tiny_model(root / "stranger", tiny_llama(7))
    rows.append({"name": "stranger", "path": "stranger", "family": "unknown", "role": "outsider"})
    (root / "broken").mkdir()
    (root / "broken" / "model.safetensors").write_bytes(b"\x00" * 5)
    rows.append({"name": "broken", "path": "broken", "family": "llama", "role": "derivative"})
    return write_manifest(root / "manifest.csv", rows, ("name", "path", "family", "base", "role", "derivation"))


@pytest.mark.slow  # seven real fingerprints, about a second each on CPU
def test_scan_of_checkpoints_is_right_and_cached(tiny_catalog: Path, tmp_path: Path):
    options = ScanOptions(method="lineage", device="cpu", cache_dir=tmp_path / "cache")
    first = scan(tiny_catalog, options)
    rows = {r["model"]: r for r in first.rows}
    assert first.failed == ["broken"] and rows["broken"]["error"]
    assert "sketch" in first.summary["description"]
    for family in ("llama", "qwen", "gemma"):
        ft = rows[f"{family}-ft"]
        assert (ft["verdict"], ft["family"], ft["derived_from"]) == ("derived", family, f"{family}-base"), ft["rule"]
        assert ft["p_value"] < 1e-6 and ft["distance"] < 0.2
        assert ft["evidence"]["weight"]["agreement"] > 0.9  # a 1% weight perturbation keeps the signs
    stranger = rows["stranger"]
    assert (stranger["verdict"], stranger["family"], stranger["derived_from"]) == ("unknown", "unknown", None)
    assert stranger["p_value"] > 0.01
    assert first.summary["verdicts"]["false_derived"]["count"] == 0
    assert first.summary["fingerprinted"] == 7

    second = scan(tiny_catalog, options)
    assert (second.summary["fingerprinted"], second.summary["cached"]) == (0, 7)
    assert [r["family"] for r in second.rows] == [r["family"] for r in first.rows]
    assert [r["verdict"] for r in second.rows] == [r["verdict"] for r in first.rows]
    assert [r["p_value"] for r in second.rows] == [r["p_value"] for r in first.rows]
