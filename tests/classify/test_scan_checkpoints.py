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
    assert first.summary["assignment"] == "kmeans" and "sketch" in first.summary["description"]
    for family in ("llama", "qwen", "gemma"):
        assert (rows[f"{family}-ft"]["family"], rows[f"{family}-ft"]["base"]) == (family, f"{family}-base")
        assert rows[f"{family}-ft"]["distance"] < 0.2
    assert rows["stranger"]["family"] == "unknown"
    assert first.summary["fingerprinted"] == 7

    second = scan(tiny_catalog, options)
    assert (second.summary["fingerprinted"], second.summary["cached"]) == (0, 7)
    assert [r["family"] for r in second.rows] == [r["family"] for r in first.rows]
