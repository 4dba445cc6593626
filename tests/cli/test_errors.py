"""How the command reports a `ValueError`: an option lineage refused, or a bug deep in a library it calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage.cli.app import app


def _run(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner(env={"LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None}).invoke(app, list(args))


def test_an_option_lineage_refuses_is_an_invalid_option(tmp_path: Path) -> None:
    result = _run("fingerprint", str(tmp_path), "--anchors", "4", "--no-cache")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid option: ")


def test_a_value_error_from_inside_numpy_is_reported_as_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths):  # noqa: ANN001, ANN202 - stands in for lineage code that hits numpy with an empty array
        return np.max(np.array([]))

    monkeypatch.setattr("lineage.fingerprint.inputs.expand_inputs", broken)
    result = _run("fingerprint", str(tmp_path), "--no-cache")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: internal error (a bug, not the input's fault")
    assert "zero-size array" in result.stderr and "invalid option" not in result.stderr
