"""Issue 17, finding 2 for `lineage verify`: a model that cannot be read is an outcome in the table, the JSON
and the ML-BOM (a component carrying its error), and the exit code is 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST

ZEPHYR = str(DEMO_MANIFEST.parent / "zephyr-7b-beta_features.json")


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


def _verify(runner: CliRunner, tmp_path: Path, *args: str):  # noqa: ANN202 - a click Result
    return runner.invoke(app, ["verify", ZEPHYR, str(tmp_path / "ghost"), "-r", str(DEMO_MANIFEST), *args])


def test_verify_json_and_table_keep_the_model_that_failed(runner: CliRunner, tmp_path: Path) -> None:
    result = _verify(runner, tmp_path, "-f", "json")
    assert result.exit_code == 2
    outcomes = {o["model"]: o for o in json.loads(result.stdout)}
    assert set(outcomes) == {"zephyr-7b-beta", "ghost"}
    ghost = outcomes["ghost"]
    assert ghost["status"] == "error" and "no such file" in ghost["error"] and ghost["path"].endswith("ghost")
    assert outcomes["zephyr-7b-beta"]["status"] == "consistent" and outcomes["zephyr-7b-beta"]["error"] is None
    table = _verify(runner, tmp_path).stdout.splitlines()
    assert table[0].split()[:2] == ["model", "status"] and any(line.split()[:2] == ["ghost", "error"] for line in table)


def test_the_ml_bom_has_a_component_with_the_error(runner: CliRunner, tmp_path: Path) -> None:
    pytest.importorskip("cyclonedx")
    from lineage.verify.bom import validate_cyclonedx

    out = tmp_path / "bom.json"
    result = _verify(runner, tmp_path, "-f", "cyclonedx", "--out", str(out))
    assert result.exit_code == 2
    text = out.read_text()
    assert validate_cyclonedx(text) is None
    comps = {c["name"]: c for c in json.loads(text)["components"]}
    assert set(comps) == {"zephyr-7b-beta", "ghost"}
    props = {p["name"]: p["value"] for p in comps["ghost"]["properties"]}
    assert props["lineage:outcome"] == "error" and "no such file" in props["lineage:error"]
