"""Issue 17, finding 3: progress off a terminal is one plain line per model (name, status, seconds), never
bar redraws (`\\r`, cursor-up escapes, lines of spaces); nothing with --quiet or LINEAGE_NO_PROGRESS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST

README = Path(__file__).resolve().parents[2] / "README.md"
SCAN = ["scan", str(DEMO_MANIFEST), "--method", "tensorguard", "--unknown", "off"]


def _runner(tmp_path: Path, **env: str | None) -> CliRunner:
    return CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_DEBUG": None, **env})


def test_progress_to_a_log_is_one_plain_line_per_model(tmp_path: Path) -> None:
    result = _runner(tmp_path, LINEAGE_NO_PROGRESS=None).invoke(app, SCAN)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fingerprint ")]
    assert len(lines) == 58
    first = lines[0].split()
    assert first[:4] == ["fingerprint", "1/58", "Llama-3.1-8B", "loaded"] and first[4].endswith("s")
    assert all(line.strip() for line in result.stderr.splitlines())  # no line of spaces


def test_quiet_and_the_environment_turn_progress_off(tmp_path: Path) -> None:
    quiet = _runner(tmp_path, LINEAGE_NO_PROGRESS=None).invoke(app, [*SCAN, "--quiet"])
    off = _runner(tmp_path, LINEAGE_NO_PROGRESS="1").invoke(app, SCAN)
    for result in (quiet, off):
        assert result.exit_code == 0 and "fingerprint " not in result.stderr


def test_a_real_process_writing_stderr_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with log.open("w") as fh:
        code = "import sys; from lineage.cli.app import main; sys.argv[0] = 'lineage'; main()"
        env = {"PATH": "/usr/bin:/bin", "LINEAGE_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", code, *SCAN], stdout=subprocess.DEVNULL, stderr=fh, env=env)
    assert done.returncode == 0
    text = log.read_text()
    assert "\r" not in text and "\x1b[A" not in text and text.count("\n") >= 58


def test_readme_documents_the_switch() -> None:
    text = README.read_text()
    assert "LINEAGE_NO_PROGRESS" in text and "one plain line per model" in text
