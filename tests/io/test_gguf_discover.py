"""A `.gguf` file, a folder holding one, and a split set are models wherever a path is taken."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import save_file

from lineage.errors import CheckpointError
from lineage.io import CheckpointReader, discover_models, is_model_folder, open_checkpoint
from lineage.io.gguf_reader import GGUFCheckpoint
from tests.io.test_gguf_support import hf_tensors, write_gguf


@pytest.fixture(scope="module")
def tensors() -> dict:
    return hf_tensors("llama")


def test_a_gguf_file_and_its_folder_are_one_model(tmp_path: Path, tensors: dict) -> None:
    path = write_gguf(tmp_path / "m" / "tiny.Q8_0.gguf", "llama", tensors)
    assert discover_models(path) == [path]
    assert is_model_folder(path.parent) and discover_models(path.parent) == [path.parent]
    with open_checkpoint(path.parent) as ckpt:
        assert isinstance(ckpt, GGUFCheckpoint) and ckpt.name == "m"
    with open_checkpoint(path) as ckpt:
        assert ckpt.name == "tiny.Q8_0"


def test_a_split_set_is_one_model(tmp_path: Path, tensors: dict) -> None:
    write_gguf(tmp_path / "s" / "tiny.gguf", "llama", tensors, split_max_tensors=8)
    assert is_model_folder(tmp_path / "s")
    assert discover_models(tmp_path) == [tmp_path / "s"]


def test_a_folder_of_several_ggufs_is_a_batch_of_files(tmp_path: Path, tensors: dict) -> None:
    folder = tmp_path / "quants"
    files = [write_gguf(folder / f"tiny.{q}.gguf", "llama", tensors) for q in ("Q4_0", "Q8_0")]
    write_gguf(folder / "big.gguf", "llama", tensors, split_max_tensors=10)
    assert not is_model_folder(folder)
    assert discover_models(folder) == sorted([*files, folder / "big-00001-of-00002.gguf"])
    with pytest.raises(CheckpointError, match="holds 3 GGUF models"):
        open_checkpoint(folder)


def test_a_batch_mixes_gguf_and_safetensors_models(tmp_path: Path, tensors: dict) -> None:
    loose = write_gguf(tmp_path / "loose.gguf", "llama", tensors)
    write_gguf(tmp_path / "a" / "x.gguf", "llama", tensors)
    (tmp_path / "b").mkdir()
    save_file(tensors, tmp_path / "b" / "model.safetensors")
    two = [write_gguf(tmp_path / "org" / "c" / f"{q}.gguf", "llama", tensors) for q in ("q4", "q8")]
    assert discover_models(tmp_path) == sorted([loose, tmp_path / "a", tmp_path / "b", *two])


def test_safetensors_win_over_a_gguf_export_beside_them(tmp_path: Path, tensors: dict) -> None:
    save_file(tensors, tmp_path / "model.safetensors")
    write_gguf(tmp_path / "export.gguf", "llama", tensors)
    with open_checkpoint(tmp_path) as ckpt:
        assert isinstance(ckpt, CheckpointReader)


def test_no_model_message_names_gguf(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no weights")
    with pytest.raises(CheckpointError, match=r"\*\.gguf"):
        discover_models(tmp_path)
