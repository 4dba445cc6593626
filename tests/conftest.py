"""Fixtures every folder of the suite shares: the repository recipe's mini catalog, built once per session.

Building it (8 small models of real architectures, trained for a few steps) is the most expensive thing a
test needs, and the catalog, e2e, reference-pack and executor tests all read the same one, so it is built
once, into the session's temporary folder, and never written to by a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_mini_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's mini catalog (bases llama-8b and mistral-7b, shape twins, fine-tunes, a task-arithmetic
    merge, a MergeLock disguise, an outsider), built once per session; returns its manifest."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    return build_catalog(BuildOptions(size="mini", out_dir=tmp_path_factory.mktemp("mini_catalog")))
