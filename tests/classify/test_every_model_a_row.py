"""Issue 17, finding 2: every model given is a row in every output format of classify, scan and attribute,
a failed one with status `error` and its one-line message; the exit code stays 1."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST

DEMO = DEMO_MANIFEST.parent
ZEPHYR = str(DEMO / "zephyr-7b-beta_features.json")


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


def _classify(runner: CliRunner, *paths: str, fmt: str = "json"):  # noqa: ANN202 - a click Result
    return runner.invoke(app, ["classify", *paths, "-r", str(DEMO_MANIFEST), "--method", "tensorguard", "-f", fmt])


def test_classify_json_csv_and_table_keep_the_failed_model(runner: CliRunner, tmp_path: Path) -> None:
    ghost = str(tmp_path / "ghost")
    result = _classify(runner, ZEPHYR, ghost)
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(r["model"], r["status"]) for r in rows] == [("zephyr-7b-beta", "ok"), ("ghost", "error")]
    assert "no such file" in rows[1]["error"] and rows[1]["path"] == ghost and rows[1]["verdict"] is None
    table = list(csv.DictReader(io.StringIO(_classify(runner, ZEPHYR, ghost, fmt="csv").stdout)))
    assert [(r["model"], r["status"]) for r in table] == [("zephyr-7b-beta", "ok"), ("ghost", "error")]
    text = _classify(runner, ZEPHYR, ghost, fmt="table").stdout.splitlines()
    assert len(text) == 4 and text[3].split()[:2] == ["ghost", "error"] and "no such file" in text[3]


def test_classify_with_every_model_failing_prints_their_rows(runner: CliRunner, tmp_path: Path) -> None:
    result = _classify(runner, str(tmp_path / "a"), str(tmp_path / "b"))
    assert result.exit_code == 1
    assert [(r["model"], r["status"]) for r in json.loads(result.stdout)] == [("a", "error"), ("b", "error")]


def test_scan_rows_say_ok_or_error(runner: CliRunner, tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    phi = DEMO / "phi-4_features.json"
    manifest.write_text(f"name,path,family,role\nphi-4,{phi},phi,base\nz,{ZEPHYR},,\ng,gone,,\n")
    result = runner.invoke(app, ["scan", str(manifest), "--method", "tensorguard", "-f", "csv"])
    assert result.exit_code == 1
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert (rows["z"]["status"], rows["g"]["status"]) == ("ok", "error") and rows["g"]["path"].endswith("gone")


def test_attribute_json_has_a_row_for_a_suspect_that_failed(runner: CliRunner, tmp_path: Path) -> None:
    ghost = tmp_path / "ghost"
    result = runner.invoke(app, ["attribute", str(ghost), "--candidates", str(DEMO_MANIFEST), "-f", "json", "-q"])
    assert result.exit_code == 1
    (row,) = json.loads(result.stdout)
    assert (row["model"], row["status"], row["path"]) == ("ghost", "error", str(ghost))
    assert "no such file" in row["error"] and row["parents"] == []
    # A suspect without raw responses (a published feature file) is its own error row, not a crash.
    result = runner.invoke(app, ["attribute", ZEPHYR, "--candidates", str(DEMO_MANIFEST), "-f", "json", "-q"])
    assert result.exit_code == 1 and json.loads(result.stdout)[0]["status"] == "error"
