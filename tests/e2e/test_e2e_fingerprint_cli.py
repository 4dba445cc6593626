"""`lineage fingerprint` end to end through typer's CliRunner: a batch with a bad model in it, JSON output,
byte-identical files, NaN weights."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import pytest

from lineage.cli.app import app
from tests.e2e.conftest import tiny_tensors, write_tiny_model

FP_SUFFIX = ".fingerprint.safetensors"


class _Payload:
    """Unpickling this creates a folder: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.mkdir, (str(self.marker),))


def _truncated(folder: Path) -> Path:
    """A model whose only safetensors file lost its last 100 bytes; returns the file."""
    write_tiny_model(folder, seed=1)
    file = folder / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:-100])
    return file


def _pickled(folder: Path) -> Path:
    """A folder holding only a `pytorch_model.bin` whose unpickling would leave a marker; returns the file."""
    folder.mkdir(parents=True)
    file = folder / "pytorch_model.bin"
    file.write_bytes(pickle.dumps(_Payload(folder.parent / "UNPICKLED")))
    return file


BAD_MODELS = {
    "truncated": (_truncated, "file is truncated"),
    "pickled": (_pickled, "refusing to unpickle 'pytorch_model.bin'"),
}


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per kind of bad model: (batch folder holding `good/` and the bad model folder, the bad file)."""
    out = {}
    for kind, (make, _) in BAD_MODELS.items():
        batch = tmp_path_factory.mktemp(f"batch-{kind}")
        write_tiny_model(batch / "good", seed=0)
        out[kind] = (batch, make(batch / kind))
    return out


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_batch_with_a_bad_model_writes_the_good_one_and_exits_1(runner, batches, tmp_path, kind):
    batch, bad_file = batches[kind]
    out = tmp_path / "fps"
    result = runner.invoke(app, ["fingerprint", str(batch), "--out", str(out), "--quiet"])
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"good{FP_SUFFIX}"]
    assert (out / f"good{FP_SUFFIX}").stat().st_size > 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2, result.stdout
    ok = [line for line in lines if line.startswith("ok  ")]
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(ok) == 1 and len(failed) == 1, result.stdout
    assert ok[0].split()[1] == "good" and ok[0].endswith(str(out / f"good{FP_SUFFIX}"))
    assert failed[0].startswith(f"FAILED  {kind}: ")
    assert str(bad_file) in failed[0] and BAD_MODELS[kind][1] in failed[0]
    assert not (batch / "UNPICKLED").exists(), "a pickle was loaded"


@pytest.mark.parametrize("kind", sorted(BAD_MODELS))
def test_batch_json_has_one_object_per_model_with_ok_and_error(runner, batches, tmp_path, kind):
    batch, bad_file = batches[kind]
    out = tmp_path / "fps"
    result = runner.invoke(app, ["fingerprint", str(batch), "--out", str(out), "--format", "json", "--quiet"])
    assert result.exit_code == 1, result.output
    docs = {d["model"]: d for d in json.loads(result.stdout)}
    assert sorted(docs) == sorted(["good", kind])
    good, bad = docs["good"], docs[kind]
    assert good["ok"] is True and good["error"] is None
    assert Path(good["file"]) == out / f"good{FP_SUFFIX}" and Path(good["file"]).is_file()
    assert good["architecture"] == "llama" and good["num_layers"] == 2 and good["vocab_size"] == 128
    assert bad["ok"] is False and "file" not in bad
    assert isinstance(bad["error"], str) and str(bad_file) in bad["error"] and BAD_MODELS[kind][1] in bad["error"]
    # In JSON mode stdout stays parseable; the failure is also one line on stderr.
    assert result.stderr.strip().splitlines() == [f"error: {bad['error']}"]
    assert not (batch / "UNPICKLED").exists(), "a pickle was loaded"


def test_fingerprint_files_are_byte_identical_when_made_twice(runner, batches, tmp_path):
    batch, _ = batches["truncated"]
    files = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        result = runner.invoke(app, ["fingerprint", str(batch), "--out", str(out), "--quiet"])
        assert result.exit_code == 1, result.output
        files.append((out / f"good{FP_SUFFIX}").read_bytes())
    single = tmp_path / "single"
    result = runner.invoke(app, ["fingerprint", str(batch / "good"), "--out", str(single), "--quiet"])
    assert result.exit_code == 0, result.output
    files.append((single / f"good{FP_SUFFIX}").read_bytes())
    assert files[0] == files[1], "two runs of the same batch gave different fingerprint files"
    assert files[0] == files[2], "the same model fingerprinted alone and in a batch gave different files"


def test_fingerprints_of_different_models_differ(runner, tmp_path):
    # Guards the byte-identity test above against a writer that ignores the weights.
    for seed in (0, 1):
        write_tiny_model(tmp_path / "models" / f"m{seed}", seed=seed)
    out = tmp_path / "fps"
    result = runner.invoke(app, ["fingerprint", str(tmp_path / "models"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / f"m0{FP_SUFFIX}").read_bytes() != (out / f"m1{FP_SUFFIX}").read_bytes()


NON_FINITE = {
    "nan-in-matrix": ("model.layers.1.mlp.down_proj.weight", math.nan),
    "nan-in-norm-gain": ("model.layers.0.input_layernorm.weight", math.nan),
    "inf-in-embedding": ("model.embed_tokens.weight", math.inf),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_non_finite_weights_give_one_line_naming_the_tensor(runner, tmp_path, case):
    tensor, value = NON_FINITE[case]
    tensors = tiny_tensors(2)
    tensors[tensor].view(-1)[5] = value
    model = write_tiny_model(tmp_path / "broken", tensors)
    out = tmp_path / "fps"

    table = runner.invoke(app, ["fingerprint", str(model), "--out", str(out), "--quiet"])
    assert table.exit_code == 1, table.output
    assert table.stdout.strip().splitlines() == [table.stdout.strip()]
    line = table.stdout.strip()
    assert line.startswith("FAILED  broken: ") and "NaN" in line and f"'{tensor}'" in line, line
    assert str(model / "model.safetensors") in line
    assert not out.exists() or not any(out.iterdir()), "a fingerprint was written for corrupt weights"

    as_json = runner.invoke(app, ["fingerprint", str(model), "--out", str(out), "--format", "json", "--quiet"])
    assert as_json.exit_code == 1
    [doc] = json.loads(as_json.stdout)
    assert doc["ok"] is False and "NaN" in doc["error"]
    errors = as_json.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and "NaN" in errors[0], as_json.stderr
    assert "Traceback" not in as_json.output


def test_nan_model_in_distance_is_one_stderr_line_and_the_rest_goes_on(runner, tmp_path):
    tensors = tiny_tensors(2)
    tensors["model.layers.0.self_attn.q_proj.weight"][0, 0] = math.nan
    broken = write_tiny_model(tmp_path / "broken", tensors)
    good = write_tiny_model(tmp_path / "good", seed=0)
    twin = write_tiny_model(tmp_path / "twin", seed=0)
    result = runner.invoke(app, ["distance", str(broken), str(good), str(twin), "--format", "json", "--quiet"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["models"] == ["good", "twin"]
    assert doc["matrix"][0][1] == pytest.approx(0.0, abs=1e-6)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "NaN" in line and str(broken) in line
