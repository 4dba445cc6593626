"""Issue 17, finding 8: help that reads like the anchors (`ruff`, `hf`): no `<bool>`, metavars that name the
thing, every input kind named; one-line errors for a model given as references; tracebacks of a model
failing inside a batch with LINEAGE_DEBUG=1; `--device cuda` without CUDA refused alike everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST

ZEPHYR = str(DEMO_MANIFEST.parent / "zephyr-7b-beta_features.json")


def _commands(command, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN202 - a click command tree
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    env = {"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None}
    return CliRunner(env={**env, "COLUMNS": "200"})


def _help(runner: CliRunner, *path: str) -> str:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_no_help_shows_a_bool_placeholder_or_a_braced_argument(runner: CliRunner) -> None:
    seen = 0
    for path, _ in _commands(typer.main.get_command(app)):
        text = _help(runner, *path)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "<bool>" not in text, path
        assert "{" not in usage and "<list" not in text, (path, usage)
        seen += 1
    assert seen > 15  # every command and group, the lead's `evaluate` ones included


def test_metavars_name_the_thing_and_every_input_kind_is_named(runner: CliRunner) -> None:
    fingerprint = _help(runner, "fingerprint")
    assert "Usage: lineage fingerprint [OPTIONS] MODEL..." in fingerprint and "GGUF" in fingerprint
    classify = _help(runner, "classify")
    assert "Usage: lineage classify [OPTIONS] MODEL..." in classify
    assert "REFERENCES" in classify and "reference pack" in classify and "'builtin'" in classify
    assert "GGUF" in classify and "hf://org/name[@revision]" in classify
    assert "Usage: lineage scan [OPTIONS] [MANIFEST | MODEL...]" in _help(runner, "scan")


def test_a_gguf_given_as_references_is_one_sensible_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF")
    result = runner.invoke(app, ["classify", ZEPHYR, "-r", str(bad)])
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "is a GGUF model file, not a manifest" in line and "missing column" not in line
    assert "reference pack" in line and "builtin" in line


def test_debug_shows_the_traceback_of_a_model_failing_in_a_batch(runner: CliRunner, monkeypatch) -> None:
    import lineage.fingerprint.gather as gather  # the serial loop, which looks the function up there

    real = gather.obtain_fingerprint

    def flaky(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "DNA-R1" in str(path):
            raise RuntimeError("boom inside the batch")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(gather, "obtain_fingerprint", flaky)
    dna = str(DEMO_MANIFEST.parent / "DNA-R1_features.json")
    args = ["classify", ZEPHYR, dna, "-r", str(DEMO_MANIFEST), "--method", "tensorguard", "-f", "json"]
    plain = runner.invoke(app, args)
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr and "RuntimeError: boom" in plain.stderr
    debug = runner.invoke(app, args, env={"LINEAGE_DEBUG": "1"})
    assert debug.exit_code == 1 and '"zephyr-7b-beta"' in debug.stdout  # the batch went on
    assert "Traceback (most recent call last)" in debug.stderr and "in flaky" in debug.stderr


def test_cuda_without_cuda_fails_alike_in_classify_and_fingerprint(runner: CliRunner, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    # A fingerprint file needs no device: classify would succeed; it must refuse the same way fingerprint does.
    classify = runner.invoke(app, ["classify", ZEPHYR, "-r", str(DEMO_MANIFEST), "--device", "cuda"])
    fingerprint = runner.invoke(app, ["fingerprint", str(tmp_path), "--device", "cuda"])
    scan = runner.invoke(app, ["scan", str(DEMO_MANIFEST), "--device", "cuda"])
    line = "error: --device cuda: no CUDA device is available here; use --device cpu or auto"
    for result in (classify, fingerprint, scan):
        assert result.exit_code == 1 and result.stdout == "" and result.stderr.strip() == line
