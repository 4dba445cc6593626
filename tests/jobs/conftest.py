"""Fixtures of the executor tests: the mini catalog (`tests/conftest.py`, built once per session) and its
serial scan, the result every executor must reproduce."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mini_manifest(shared_mini_catalog: Path) -> Path:
    """The recipe's mini catalog (8 models of real architectures), built once per session."""
    return shared_mini_catalog


@pytest.fixture(scope="session")
def serial_scan(mini_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    """The serial executor's scan of the mini catalog, on a fresh cache."""
    from lineage.jobs.scan import ScanOptions, scan

    return scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path_factory.mktemp("serial-cache")))
