"""Fixtures of the reference-pack tests: the mini catalog built once per session, and its fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


def cli_runner(cache: Path) -> CliRunner:
    """A runner with its own fingerprint cache and no progress bars."""
    return CliRunner(env={"LINEAGE_CACHE": str(cache), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


@pytest.fixture(scope="session")
def mini_manifest(shared_mini_catalog: Path) -> Path:
    """The repository recipe's mini catalog (bases llama-8b and mistral-7b, derivatives, an outsider;
    `tests/conftest.py`: built once per session)."""
    return shared_mini_catalog


@pytest.fixture(scope="session")
def mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fingerprint cache for the session: each mini model is fingerprinted once."""
    return tmp_path_factory.mktemp("refs_cache")


@pytest.fixture(scope="session")
def mini_fingerprints(mini_manifest: Path, mini_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> fingerprint file of every mini-catalog model (written by `lineage fingerprint --out`)."""
    from lineage.cli.app import app
    from lineage.refs.manifest import read_manifest

    out = tmp_path_factory.mktemp("refs_fps")
    rows = read_manifest(mini_manifest).rows
    result = cli_runner(mini_cache).invoke(
        app, ["fingerprint", *[str(r.path) for r in rows], "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    from lineage.fingerprint.format import fingerprint_path

    files = {r.name: fingerprint_path(out, r.path.name) for r in rows}
    assert all(f.is_file() for f in files.values()), sorted(p.name for p in out.iterdir())
    return files
