"""Fixtures every folder of the suite shares: the repository recipe's mini catalog, built once per session,
and this process's thread pools, left by each test as it found them.

Building the catalog (8 small models of real architectures, trained for a few steps) is the most expensive
thing a test needs, and the catalog, e2e, reference-pack and executor tests all read the same one, so it is
built once, into the session's temporary folder, and never written to by a test.

CLI tests run commands in this process, and a command sizes the pools (`lineage.fingerprint.threads`:
under a cgroup quota, fewer threads than torch's default); tests that compare fingerprints bit for bit
read torch's thread count, so every test restores it, and the variables that set it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.fingerprint.threads import POOL_VARIABLES, WAIT_POLICY


@pytest.fixture(autouse=True)
def _thread_pools_restored() -> Iterator[None]:
    import torch

    names = (*POOL_VARIABLES, WAIT_POLICY[0])
    saved_env, saved_threads = {name: os.environ.get(name) for name in names}, torch.get_num_threads()
    yield
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if torch.get_num_threads() != saved_threads:
        torch.set_num_threads(saved_threads)


@pytest.fixture(scope="session")
def shared_mini_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's mini catalog (bases llama-8b and mistral-7b, shape twins, fine-tunes, a task-arithmetic
    merge, a MergeLock disguise, an outsider), built once per session; returns its manifest."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    return build_catalog(BuildOptions(size="mini", out_dir=tmp_path_factory.mktemp("mini_catalog")))
