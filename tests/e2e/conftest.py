"""Fixtures of the end-to-end tests: tiny checkpoints written with safetensors alone, the mini catalog built
once per session, and a `CliRunner` whose fingerprint cache and progress bars stay out of the way.

The expensive fixtures (the mini catalog, its first two scans) are session-scoped, so the folder runs in
well under a minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

TINY_CONFIG = TINY_LLAMA_CONFIG
tiny_tensors = tiny_llama_tensors


def write_tiny_model(folder: Path, tensors: dict[str, torch.Tensor] | None = None, seed: int = 0) -> Path:
    """Write a tiny Llama as a Hugging Face folder (`model.safetensors` + `config.json`); returns the folder."""
    return write_checkpoint(folder, tensors if tensors is not None else tiny_llama_tensors(seed))


def cli_runner(cache: Path) -> CliRunner:
    """A runner with its own fingerprint cache and no progress bars (stdout and stderr kept apart)."""
    return CliRunner(env={"LINEAGE_CACHE": str(cache), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


@pytest.fixture()
def runner(tmp_path: Path) -> CliRunner:
    """A runner whose default fingerprint cache is a fresh temporary folder."""
    return cli_runner(tmp_path / "default-cache")


@pytest.fixture(scope="session")
def e2e_mini_manifest(shared_mini_catalog: Path) -> Path:
    """The repository recipe's ``mini`` catalog (shape twins, two fine-tunes, a task-arithmetic merge, a
    MergeLock disguise, an outsider; `tests/conftest.py`: built once per session); its manifest."""
    return shared_mini_catalog


@pytest.fixture(scope="session")
def e2e_mini_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fingerprint cache every mini-catalog test shares (filled by `e2e_mini_scans`)."""
    return tmp_path_factory.mktemp("e2e_mini_cache")


@pytest.fixture(scope="session")
def e2e_mini_scans(e2e_mini_manifest: Path, e2e_mini_cache: Path) -> tuple:
    """`lineage scan --format json` run twice on the mini catalog with an empty cache: both results."""
    from lineage.cli.app import app

    runner = cli_runner(e2e_mini_cache)
    args = ["scan", str(e2e_mini_manifest), "--cache", str(e2e_mini_cache), "--format", "json", "--quiet"]
    return runner.invoke(app, args), runner.invoke(app, args)
