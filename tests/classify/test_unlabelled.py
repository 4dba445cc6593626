"""Issue 17, finding 1: unlabelled suspects can be scanned; labels are scored only where they exist, and a
model that failed is counted apart from a wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.jobs.scan import ScanOptions, scan
from lineage.refs.manifest import read_manifest
from lineage.report.summary import summarize, summary_text
from tests.fakes import family_centres, write_fake


def _references(folder: Path) -> Path:
    """A references manifest of two families' bases (fingerprint files); returns the CSV."""
    c = family_centres()
    write_fake(folder, "llama-base", c["llama"], 1)
    write_fake(folder, "qwen-base", c["qwen"], 2)
    csv = folder / "refs.csv"
    csv.write_text(
        "name,path,family\nllama-base,llama-base.fingerprint.safetensors,llama\n"
        "qwen-base,qwen-base.fingerprint.safetensors,qwen\n"
    )
    return csv


def _suspects(folder: Path) -> Path:
    c = family_centres()
    write_fake(folder, "upload-1", c["llama"], 11)
    write_fake(folder, "upload-2", c["qwen"], 12)
    (folder / "broken.fingerprint.safetensors").write_bytes(b"not a fingerprint")
    return folder


def test_a_manifest_needs_only_a_path_column(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "m.csv").write_text("path\na/model.gguf\nb/model.gguf\nc.fingerprint.safetensors\n")
    rows = read_manifest(tmp_path / "m.csv", require_references=False).rows
    # Names from the paths (the GGUF suffix dropped), told apart by folder when two share one; no labels.
    assert [r.name for r in rows] == ["a/model", "b/model", "c"]
    assert all(r.family is None and r.base is None and r.role is None for r in rows)


def test_a_folder_of_unlabelled_suspects_scans_against_references(tmp_path: Path) -> None:
    refs, folder = _references(tmp_path / "refs"), _suspects(tmp_path / "uploads")
    result = scan([folder], ScanOptions(method="tensorguard", unknown="off", use_cache=False), references=refs)
    rows = {r["model"]: r for r in result.rows}
    assert set(rows) == {"upload-1", "upload-2", "broken"}  # every model, the failed one included
    assert (rows["upload-1"]["family"], rows["upload-2"]["family"]) == ("llama", "qwen")
    assert rows["broken"]["status"] == "error" and "broken" in rows["broken"]["path"]
    s = result.summary
    assert (s["suspects"], s["labelled"], s["unlabelled"], s["failed"], s["references"]) == (3, 0, 3, 1, 2)
    assert s["family_accuracy"]["total"] == 0 and s["verdicts"]["verdict_accuracy"]["total"] == 0
    text = summary_text(s)
    assert "scores: none" in text and "family accuracy" not in text and "falsely derived" not in text


def test_cli_scan_of_a_folder_with_no_manifest_writes_every_verdict(tmp_path: Path) -> None:
    refs, folder = _references(tmp_path / "refs"), _suspects(tmp_path / "uploads")
    out = tmp_path / "report"
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    args = ["scan", str(folder), "-r", str(refs), "--method", "tensorguard", "--unknown", "off", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # a model failed: exit 1, the others still scanned
    written = json.loads((out / "results.json").read_text())
    assert sorted(r["model"] for r in written) == ["broken", "upload-1", "upload-2"]
    assert (out / "report.html").is_file() and "Verdicts" in (out / "report.html").read_text()


def test_a_row_without_a_base_label_is_not_scored_as_falsely_derived() -> None:
    # A manifest without a base column: a real derivative called derived must not count as a false accusation.
    rows = [
        {"model": "ft", "verdict": "derived", "derived_from": "llama", "family": "llama", "base": "llama",
         "p_value": 1e-9, "true_family": "llama", "true_base": None, "role": None, "error": None},
    ]  # fmt: skip
    s = summarize(rows, ["llama"], ["llama"], ["llama"])
    assert s["verdicts"]["false_derived"]["count"] == 0 and s["verdicts"]["verdict_accuracy"]["total"] == 0
    assert s["family_accuracy"] == {"correct": 1, "total": 1, "rate": 1.0}  # its family label is scored


def test_failed_rows_are_counted_apart_from_wrong_answers() -> None:
    rows = [
        {"model": "ok", "verdict": "related", "family": "llama", "p_value": None, "true_family": "llama",
         "true_base": "llama", "role": "derivative", "error": None},
        {"model": "gone", "verdict": None, "family": None, "p_value": None, "true_family": "llama",
         "true_base": "llama", "role": "derivative", "error": "no such file"},
    ]  # fmt: skip
    s = summarize(rows, ["llama"], ["llama"], ["llama"])
    assert s["failed"] == 1 and s["family_accuracy"] == {"correct": 1, "total": 1, "rate": 1.0}
    assert s["verdicts"]["missed_derived"]["models"] == ["ok"]  # only a model that was read can be missed
    assert s["errors"] == {"gone": "no such file"}
