"""Paths and small JSON documents that broke the one-line promise (a bad-input battery's findings): special
files, names too long, names holding a newline, JSON nested too deeply or holding giant integers, files
linked out of the model folder, tokenizers and adapter configs with values of the wrong kind. Each is one
`CheckpointError` line naming the file, and a batch goes on past it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import save_file

from lineage.errors import CheckpointError, UnsafeCheckpointError
from lineage.fingerprint.inputs import expand_inputs
from lineage.io import discover_models, open_checkpoint, read_header
from lineage.io.adapter import read_lora_settings
from lineage.io.vocab import find_vocabulary
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

DEEP = "[" * 100_000 + "]" * 100_000  # deeper than the JSON parser's recursion limit
HUGE_INT = "1" * 5000  # longer than Python's limit on integer strings


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "good", tiny_llama_tensors(seed=1))


def one_line(exc: BaseException, *phrases: str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.parametrize("name", ["upload.gguf", "model.safetensors"])
def test_a_pipe_is_refused_and_the_batch_goes_on(tmp_path: Path, good: Path, name: str) -> None:
    fifo = tmp_path / name
    os.mkfifo(fifo)
    for call in (discover_models, open_checkpoint):
        with pytest.raises(CheckpointError) as info:
            call(fifo)
        one_line(info.value, str(fifo), "not a regular file or folder")
    rows = dict(expand_inputs([good, fifo]))
    assert rows[good] is None and "not a regular file or folder" in rows[fifo]


def test_a_name_too_long_is_one_failed_row(tmp_path: Path, good: Path) -> None:
    long = tmp_path / ("a" * 300)
    rows = dict(expand_inputs([long, good]))
    assert rows[good] is None and "cannot read it (File name too long)" in rows[long]
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(long)
    one_line(info.value, "File name too long")


def test_a_newline_in_a_folder_name_stays_on_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "two\nlines"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0")
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(folder)
    one_line(info.value, "two\\nlines", "truncated")


@pytest.mark.parametrize("text", [DEEP, f'{{"n": {HUGE_INT}}}'], ids=["deep", "huge-int"])
@pytest.mark.parametrize("document", ["config.json", "model.safetensors.index.json", "tokenizer.json"])
def test_json_documents_nested_too_deeply_or_with_giant_integers(
    good: Path, document: str, text: str
) -> None:
    (good / document).write_text(text)
    with pytest.raises(CheckpointError) as info:
        with open_checkpoint(good) as ckpt:
            ckpt.vocabulary  # noqa: B018 - reading it is the point
    one_line(info.value, document)
    assert "RecursionError" not in str(info.value) and "ValueError" not in str(info.value)


@pytest.mark.parametrize("text", [DEEP, f'{{"a": {HUGE_INT}}}'], ids=["deep", "huge-int"])
def test_a_safetensors_header_nested_too_deeply_or_with_a_giant_integer(tmp_path: Path, text: str) -> None:
    raw = text.encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    with pytest.raises(CheckpointError) as info:
        read_header(path)
    one_line(info.value, str(path), "header is not valid JSON")


def test_files_linked_out_of_the_folder_are_refused(tmp_path: Path, good: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"model": {"vocab": {"hello": 0, "world": 1}}}))
    (good / "tokenizer.json").symlink_to(outside)
    with pytest.raises(UnsafeCheckpointError) as info:
        find_vocabulary(good)
    one_line(info.value, "tokenizer.json", "outside the model folder")
    # The config beside a safetensors file given on its own is read from that folder, so it is checked too.
    (good / "tokenizer.json").unlink()
    (good / "config.json").unlink()
    (good / "config.json").symlink_to(outside)
    with pytest.raises(UnsafeCheckpointError) as info:
        open_checkpoint(good / "model.safetensors")
    one_line(info.value, "config.json", "outside the model folder")


@pytest.mark.parametrize("linked", ["adapter_config.json", "adapter_model.safetensors"])
def test_adapter_files_linked_out_of_the_folder_are_refused(tmp_path: Path, good: Path, linked: str) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": tiny_llama_tensors(seed=2)[
        "model.layers.0.self_attn.q_proj.weight"][:4].contiguous()}, str(adapter / "adapter_model.safetensors"))
    outside = tmp_path / linked
    (adapter / linked).rename(outside)
    (adapter / linked).symlink_to(outside)
    with pytest.raises(UnsafeCheckpointError) as info:
        open_checkpoint(adapter)
    one_line(info.value, linked, "outside the model folder")


@pytest.mark.parametrize(
    ("vocab", "phrase"),
    [
        ({"model": {"vocab": [[7, 0.0], ["b", 0.0]]}}, "not a string"),
        ({"model": {"vocab": {"a": 0, "b": 0}}}, "gives id 0 to two tokens"),
        ({"model": {"vocab": {"a": 0}}, "added_tokens": {"x": 1}}, "added_tokens is not a list"),
        ({"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 1, "content": 5}]}, "not a string"),
        ({"model": {"vocab": "abc"}}, "model.vocab is a JSON str"),
    ],
    ids=["unigram-number", "duplicate-id", "added-not-list", "added-number", "vocab-string"],
)
def test_tokenizers_with_values_of_the_wrong_kind(good: Path, vocab: dict, phrase: str) -> None:
    (good / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(CheckpointError) as info:
        find_vocabulary(good)
    one_line(info.value, "tokenizer.json", phrase)


@pytest.mark.parametrize(
    ("config", "phrase"),
    [
        ({"base_model_name_or_path": 7}, "base_model_name_or_path is 7, not a path"),
        ({"base_model_name_or_path": ["a"]}, "not a path"),
        ({"r": 1e400}, "r is inf, not a positive integer"),
        ({"r": 2.5}, "r is 2.5, not a positive integer"),
        ({"r": True}, "r is True, not a positive integer"),
        ({"lora_alpha": "x"}, "lora_alpha is 'x', not a finite number"),
        ({"rank_pattern": {"q_proj": 0}}, "rank_pattern['q_proj'] is 0"),
        ({"rank_pattern": {"q_proj": "abc"}}, "rank_pattern['q_proj'] is 'abc'"),
        ({"alpha_pattern": {"v_proj": "x"}}, "alpha_pattern['v_proj'] is 'x'"),
        ({"rank_pattern": {"q_proj[(": 4}}, "is not a pattern"),
        ({"rank_pattern": [1]}, "rank_pattern is not an object"),
    ],
)
def test_adapter_configs_with_values_of_the_wrong_kind(tmp_path: Path, config: dict, phrase: str) -> None:
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, **config}).replace("Infinity", "1e400"))
    with pytest.raises(CheckpointError) as info:
        read_lora_settings(path)
    one_line(info.value, str(path), phrase)


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_failed_model_is_an_error_line_on_stderr_in_every_format(tmp_path: Path, good: Path, fmt: str) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app

    missing = tmp_path / "missing"
    args = ["fingerprint", str(good), str(missing), "--no-cache", "--quiet", "--out", str(tmp_path / "fps")]
    result = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache")}).invoke(app, [*args, "--format", fmt])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {missing}: no such file or folder; check the path"
    assert "good" in result.stdout  # the good model is still a row of the output
