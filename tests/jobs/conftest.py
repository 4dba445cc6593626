"""Fixtures of the executor tests: the mini catalog (built once into .lineage/, reused while up to date) and
its serial scan, the result every executor must reproduce."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mini_manifest() -> Path:
    """The recipe's mini catalog (7 models of real architectures); rebuilt only when out of date."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    return build_catalog(BuildOptions(size="mini", out_dir=ROOT / ".lineage" / "test-catalogs" / "mini"))


@pytest.fixture(scope="session")
def serial_scan(mini_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """The serial executor's scan of the mini catalog, on a fresh cache."""
    from lineage.jobs.scan import ScanOptions, scan

    return scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path_factory.mktemp("serial-cache")))
