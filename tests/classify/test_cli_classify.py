"""`lineage classify`, `distance` and `scan` through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.data import DEMO_MANIFEST
from lineage.decide.verdict import DEFAULT_ALPHA
from lineage.report.rows import ROW_KEYS
from tests.schema import VERDICT_KEYS

try:
    from lineage.cli.app import app
except ImportError:  # another engineer's command module is not there yet: test ours on a bare app
    import typer

    from lineage.cli import classify as _classify
    from lineage.cli import scan as _scan

    app = typer.Typer()
    _classify.register(app)
    _scan.register(app)

DEMO = DEMO_MANIFEST.parent
ZEPHYR, PHI = str(DEMO / "zephyr-7b-beta_features.json"), str(DEMO / "DNA-R1_features.json")


@pytest.fixture
def runner(monkeypatch, tmp_path) -> CliRunner:
    monkeypatch.setenv("LINEAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LINEAGE_NO_PROGRESS", "1")
    return CliRunner()




def test_classify_json_has_exactly_the_documented_keys(runner):
    result = runner.invoke(app, ["classify", ZEPHYR, PHI, "--reference", str(DEMO_MANIFEST), "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.stdout)
    assert [v["model"] for v in verdicts] == ["zephyr-7b-beta", "DNA-R1"]
    for v in verdicts:
        assert set(v) == VERDICT_KEYS | ROW_KEYS  # a verdict's keys, and where the model is, whether it worked
        assert v["status"] == "ok" and v["error"] is None and v["path"].endswith("_features.json")
        assert len(v["distances"]) == 8 and v["distance"] == min(v["distances"].values())
        # Published feature files carry no weights: no derivation test, so no p-value and never derived.
        assert v["p_value"] is None and v["verdict"] in ("related", "unknown") and v["derived_from"] is None
        assert v["method"] == "lineage" and v["threshold"]["alpha"] == DEFAULT_ALPHA


def test_classify_tensorguard_paper_rule_and_csv(runner):
    args = ["classify", ZEPHYR, PHI, "-r", str(DEMO_MANIFEST), "--method", "tensorguard", "--unknown", "off"]
    result = runner.invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["verdict"], r["family"], r["derived_from"]) for r in rows] == [
        ("related", "mistral", ""),
        ("related", "phi", ""),
    ]
    assert list(rows[0])[:6] == ["model", "verdict", "family", "derived_from", "p_value", "distance"]
    assert "dist:Mistral-7B-v0.1" in rows[0]
    assert float(rows[0]["distance"]) == float(rows[0]["dist:Mistral-7B-v0.1"])
    table = runner.invoke(app, args).stdout.splitlines()
    assert table[0].split() == ["model", "verdict", "family", "p_value", "distance", "nearest", "path"]
    assert len(table) == 4
    # The verdict in words, the missing p-value as "-", the nearest distance as a number.
    assert table[2].split()[:5] == ["zephyr-7b-beta", "related", "to", "mistral", "mistral"]
    assert table[2].split()[5] == "-" and float(table[2].split()[6]) == pytest.approx(float(rows[0]["distance"]), 1e-3)


def test_classify_writes_files_and_fails_on_a_bad_model(runner, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["classify", ZEPHYR, str(tmp_path / "nope"), "-r", str(DEMO_MANIFEST), "-o", str(out)])
    assert result.exit_code == 1
    assert "zephyr-7b-beta" in result.stdout and "no such file" in result.stderr
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.parquet", "results.json"}


def test_errors_are_one_line_and_exit_1(runner, tmp_path):
    result = runner.invoke(app, ["classify", ZEPHYR, "-r", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.csv'}: no such manifest file"]
    bad = runner.invoke(app, ["classify", ZEPHYR, "-r", str(DEMO_MANIFEST), "--unknown", "sometimes"])
    assert bad.exit_code == 2 and "--unknown" in bad.output


def test_distance_matrix(runner):
    result = runner.invoke(app, ["distance", ZEPHYR, PHI, ZEPHYR, "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["models"] == ["zephyr-7b-beta", "DNA-R1", "zephyr-7b-beta#2"] and doc["method"] == "lineage"
    assert doc["matrix"][0][2] == 0.0 and doc["matrix"][0][1] == doc["matrix"][1][0] > 0
    table = runner.invoke(app, ["distance", ZEPHYR, PHI]).stdout.splitlines()
    assert table[0].split() == ["model", "zephyr-7b-beta", "DNA-R1"]


def test_scan_demo_json_rows_carry_verdicts_and_labels(runner):
    result = runner.invoke(app, ["scan", "--method", "tensorguard", "--unknown", "off", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"summary", "results"}
    rows = doc["results"]
    assert len(rows) == 58 and doc["summary"]["models"] == 58
    # The family accuracy the summary reports is the share of suspect rows in their true family.
    suspects = [r for r in rows if r["role"] != "base"]
    right = sum(r["family"] == r["true_family"] for r in suspects)
    assert doc["summary"]["family_accuracy"] == {"correct": right, "total": 50, "rate": round(right / 50, 4)}
    assert right >= 40
    keys = VERDICT_KEYS | {"base", "cluster_family", "true_family", "true_base", "derivation", "role", "error"}
    assert all(keys <= set(r) for r in rows)
    assert all(r["base"] == r["derived_from"] and r["cluster_family"] == r["cluster"] for r in rows)
    assert {r["verdict"] for r in rows} == {"related"}  # unknown off, and feature files are never derived
    assert doc["summary"]["verdicts"]["false_derived"]["count"] == 0


def test_scan_table_csv_and_report_folder(runner, tmp_path):
    table = runner.invoke(app, ["scan"])
    assert table.exit_code == 0 and "family accuracy:" in table.stdout and "unknown threshold:" in table.stdout
    assert runner.invoke(app, ["scan", "-f", "csv"]).stdout.startswith(
        "model,verdict,family,derived_from,p_value,distance"
    )
    out = tmp_path / "report"
    result = runner.invoke(app, ["scan", str(DEMO_MANIFEST), "--method", "tensorguard", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {"report.html", "map.png", "heatmap.png", "summary.json", "distances.csv"} <= {p.name for p in out.iterdir()}


def test_scan_exit_code_is_1_when_a_model_failed(runner, tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "name,path,family,role\n"
        f"phi-4,{DEMO / 'phi-4_features.json'},phi,base\n"
        f"zephyr,{ZEPHYR},mistral,derivative\n"
        "ghost,ghost_features.json,phi,derivative\n"
    )
    result = runner.invoke(app, ["scan", str(manifest), "-f", "json"])
    assert result.exit_code == 1
    rows = {r["model"]: r for r in json.loads(result.stdout)["results"]}
    assert rows["ghost"]["error"] and rows["zephyr"]["error"] is None
    assert "ghost" in result.stderr
