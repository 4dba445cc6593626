"""Issue 17, finding 6: every row says which file it is; models that share a name are told apart; `lineage
fingerprint` uses the cache and, without --out, never writes one model's file over another's."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.data import DEMO_MANIFEST
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

DEMO = DEMO_MANIFEST.parent


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


def _two_named_model(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "org1" / "model_features.json", tmp_path / "org2" / "model_features.json"
    for target, source in ((a, "zephyr-7b-beta"), (b, "DNA-R1")):
        target.parent.mkdir(parents=True)
        doc = json.loads((DEMO / f"{source}_features.json").read_text())
        target.write_text(json.dumps({**doc, "model_name": "model"}))  # two uploads that call themselves "model"
    return a, b


def test_models_of_one_name_are_rows_of_their_own_with_their_path(runner: CliRunner, tmp_path: Path) -> None:
    a, b = _two_named_model(tmp_path)
    args = ["classify", str(a), str(b), "-r", str(DEMO_MANIFEST), "--method", "tensorguard"]
    rows = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert [(r["model"], r["path"]) for r in rows] == [("org1/model", str(a)), ("org2/model", str(b))]
    table = list(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "-f", "csv"]).stdout)))
    assert [(r["model"], r["path"]) for r in table] == [("org1/model", str(a)), ("org2/model", str(b))]
    matrix = json.loads(runner.invoke(app, ["distance", str(a), str(b), "-f", "json"]).stdout)
    assert matrix["models"] == ["org1/model", "org2/model"]


def test_fingerprint_without_out_never_overwrites_and_uses_the_cache(runner: CliRunner, tmp_path: Path) -> None:
    a = write_checkpoint(tmp_path / "a" / "model", tiny_llama_tensors(0))
    b = write_checkpoint(tmp_path / "b" / "model", tiny_llama_tensors(1))
    first = json.loads(runner.invoke(app, ["fingerprint", str(a), "-f", "json"]).stdout)
    second = json.loads(runner.invoke(app, ["fingerprint", str(b), "-f", "json"]).stdout)
    files = {first[0]["file"], second[0]["file"]}
    assert len(files) == 2 and all(Path(f).is_file() for f in files)  # two models, two files
    assert [first[0]["how"], second[0]["how"]] == ["fingerprinted", "fingerprinted"]
    again = json.loads(runner.invoke(app, ["fingerprint", str(a), "-f", "json"]).stdout)
    assert again[0]["how"] == "cached" and again[0]["file"] == first[0]["file"]  # the same model, its own file
    batch = json.loads(runner.invoke(app, ["fingerprint", str(a), str(b), "--out", str(tmp_path / "o"), "-f", "json"]
                                     ).stdout)  # fmt: skip
    assert [r["model"] for r in batch] == ["a/model", "b/model"] and [r["how"] for r in batch] == ["cached"] * 2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "a__model.fingerprint.safetensors", "b__model.fingerprint.safetensors",
    ]  # fmt: skip


def test_one_name_rule_for_every_kind_of_path() -> None:
    from lineage.io.names import model_name, unique_names

    assert model_name("x/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert model_name("x/llama-00002-of-00003.gguf") == "llama"
    assert model_name("x/llama/model.safetensors") == "llama" and model_name("x/llama") == "llama"
    assert model_name("fps/llama.fingerprint.safetensors") == "llama" and model_name("hf://org/m@v1") == "m"
    assert unique_names(["m", "m", "m"], ["/a/m", "/a/m", "/b/m"]) == ["a/m", "a/m#2", "b/m"]
