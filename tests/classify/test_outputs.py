"""Every `--out` is checked before any work, and a report folder is replaced as a whole or not at all.

Before: `scan --out FILE` ran the whole scan, printed the table, then died in a 45-line FileExistsError
traceback; `fingerprint --out FILE` printed a raw FileExistsError; `scan --out` wrote into any folder (a
reference pack included: `refs verify` then failed), and a killed rerun left new results beside an old page;
`verify --out FILE` overwrote silently. The demo scan (published features, seconds) stands in for any scan.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST
from lineage.errors import OutputError
from lineage.report.destination import SCAN_FILES, check_out_folder, write_folder

runner = CliRunner()


def _scan(out: Path, *more: str):  # noqa: ANN202 - click's Result
    return runner.invoke(app, ["scan", "-q", "--out", str(out), *more])


def _one_error_line(result, exit_code: int = 1) -> str:  # noqa: ANN001
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.output
    return lines[0]


def test_scan_out_at_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.write_text("mine")
    result = _scan(target)
    assert "is a file" in _one_error_line(result)
    assert result.stdout == ""  # nothing scanned: no table
    assert target.read_text() == "mine"


def test_scan_out_below_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert "is a file, so" in _one_error_line(_scan(tmp_path / "f" / "report"))


def test_scan_out_unwritable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lineage.report.destination as destination

    monkeypatch.setattr(destination.os, "access", lambda path, mode: False)  # root may write anywhere: pretend
    assert "is not writable" in _one_error_line(_scan(tmp_path / "new"))


def test_scan_out_into_a_reference_pack_is_refused(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "pack.json").write_text("{}")
    before = sorted(p.name for p in pack.iterdir())
    assert "is a reference pack" in _one_error_line(_scan(pack))
    assert sorted(p.name for p in pack.iterdir()) == before


def test_scan_out_into_another_folder_needs_force(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert "notes.txt" in _one_error_line(_scan(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    result = _scan(folder, "--force")
    assert result.exit_code == 0, result.output
    assert {p.name for p in folder.iterdir()} == SCAN_FILES | {"notes.txt"}
    assert (folder / "notes.txt").read_text() == "mine"


def test_scan_replaces_a_previous_report_as_a_whole_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("old page")
    (out / "map.png").write_bytes(b"")  # a killed scan's 0-byte picture
    result = _scan(out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}/" in result.stderr
    assert {p.name for p in out.iterdir()} == SCAN_FILES
    assert (out / "map.png").stat().st_size > 0 and "old page" not in (out / "report.html").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary folder left


def test_a_report_failing_while_written_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text("previous")

    def dies_halfway(folder: Path) -> list[Path]:
        (folder / "results.json").write_text("new")
        raise KeyboardInterrupt  # killed while writing

    with pytest.raises(KeyboardInterrupt):
        write_folder(out, dies_halfway)
    assert [p.name for p in out.iterdir()] == ["results.json"] and (out / "results.json").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_check_out_folder_takes_new_empty_and_report_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text("{}")
    for name in ("new", "empty", "old"):
        assert check_out_folder(tmp_path / name) == tmp_path / name
    (tmp_path / "old" / "sub").mkdir()
    with pytest.raises(OutputError, match="sub"):
        check_out_folder(tmp_path / "old")


def test_classify_and_distance_out_are_checked_first(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    one = DEMO_MANIFEST.parent / "phi-4_features.json"
    for args in (["classify", str(one), "-r", str(DEMO_MANIFEST)], ["distance", str(one), str(one)]):
        result = runner.invoke(app, [*args, "--method", "tensorguard", "--out", str(target)])
        assert "is a file" in _one_error_line(result) and result.stdout == ""


def test_fingerprint_out_at_a_file_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    result = runner.invoke(app, ["fingerprint", str(tmp_path), "--out", str(target)])
    assert "is a file; --out takes a folder" in _one_error_line(result)


def test_verify_out_never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "bom.json"
    target.write_text("previous")
    one = DEMO_MANIFEST.parent / "phi-4_features.json"
    args = ["verify", str(one), "-r", str(DEMO_MANIFEST), "--method", "tensorguard", "--out", str(target)]
    line = _one_error_line(runner.invoke(app, args), exit_code=2)  # verify's exit code for an error
    assert "exists already" in line and target.read_text() == "previous"
    (tmp_path / "dir").mkdir()
    assert "is a folder" in _one_error_line(runner.invoke(app, [*args[:-1], str(tmp_path / "dir")]), exit_code=2)
    result = runner.invoke(app, [*args, "--force", "-q"])
    assert result.exit_code in (0, 1), result.output  # consistent or a finding: it ran, and wrote
    assert target.read_text() != "previous" and f"wrote {target}" in result.stderr


def test_verify_takes_format_csv(tmp_path: Path) -> None:
    import csv

    one = DEMO_MANIFEST.parent / "phi-4_features.json"
    result = runner.invoke(app, ["verify", str(one), "-r", str(DEMO_MANIFEST), "--method", "tensorguard", "-f", "csv",
                                 "-q"])  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    table = list(csv.reader(result.stdout.splitlines()))
    assert table[0] == ["model", "status", "declared", "derived_from", "path", "why"]
    assert len(table) == 2 and table[1][0] == "phi-4"
