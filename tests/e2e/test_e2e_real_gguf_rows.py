"""Issue 17 on the real SmolLM2-135M-Instruct GGUF and the `builtin` pack made from it: the official file is
consistent with its own reference (finding 5), keeps one name without `.gguf` in every command, fingerprinted
or cached (finding 6), and a folder of unlabelled models scans against `builtin` with no manifest at all,
failed models included (the issue's "done when")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from tests.checkpoints import tiny_llama_tensors, write_checkpoint
from tests.real import smollm2_gguf

pytestmark = pytest.mark.slow
NAME = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    cache = tmp_path_factory.mktemp("gguf_rows_cache")
    return CliRunner(env={"LINEAGE_CACHE": str(cache), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


def _json(runner: CliRunner, *args: str) -> list[dict]:
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_official_gguf_is_consistent_with_builtin(runner: CliRunner) -> None:
    (outcome,) = _json(runner, "verify", str(smollm2_gguf()), "-r", "builtin")
    assert outcome["status"] == "consistent", outcome["reason"]
    assert "the model is the reference 'SmolLM2-135M-Instruct'" in outcome["reason"]
    assert outcome["model"] == NAME and outcome["path"] == str(smollm2_gguf())


def test_a_gguf_keeps_one_name_fingerprinted_or_cached(runner: CliRunner, tmp_path: Path) -> None:
    gguf = str(smollm2_gguf())
    first = _json(runner, "fingerprint", gguf, "--out", str(tmp_path / "fps"))
    again = _json(runner, "fingerprint", gguf)  # the cache: no second 20 s, the same name
    assert (first[0]["model"], again[0]["model"]) == (NAME, NAME)
    assert again[0]["how"] == "cached"
    (row,) = _json(runner, "classify", gguf, "-r", "builtin")
    assert row["model"] == NAME and row["path"] == gguf and row["p_value_text"] != "0"


def test_a_folder_of_unlabelled_models_scans_against_builtin(runner: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    write_checkpoint(folder / "tiny", tiny_llama_tensors(3))
    os.symlink(smollm2_gguf(), folder / "smollm2.gguf")
    (folder / "broken").mkdir()
    (folder / "broken" / "model.safetensors").write_bytes(b"\x00" * 16)
    out = tmp_path / "r"
    result = runner.invoke(app, ["scan", str(folder), "-r", "builtin", "--out", str(out)])
    assert result.exit_code == 1, result.output  # one model failed; the others have verdicts
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert set(rows) == {"tiny", "smollm2", "broken"}
    assert rows["broken"]["status"] == "error" and rows["broken"]["error"]
    assert rows["smollm2"]["nearest_reference"] == "SmolLM2-135M-Instruct" and rows["tiny"]["status"] == "ok"
    page = (out / "report.html").read_text()
    assert 'id="verdicts"' in page and "nothing is scored" in page
    assert "scores: none" in result.stdout
