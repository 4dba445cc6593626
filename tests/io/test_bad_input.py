"""Every broken or unsafe input is one `CheckpointError` line that names the file and the problem."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from lineage.errors import CheckpointError, NonFiniteWeightsError, UnsafeCheckpointError
from lineage.io import discover_models, open_checkpoint, read_header

F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def check(exc_info: pytest.ExceptionInfo, cls: type, file: str, phrase: str) -> None:
    exc = exc_info.value
    message = str(exc)
    assert type(exc) is cls, f"{type(exc).__name__}: {message}"
    assert file in message and phrase in message, message
    assert "\n" not in message


def entry(dtype: str = "F32", shape: list | None = None, offsets: list | None = None) -> dict:
    return {"dtype": dtype, "shape": [2] if shape is None else shape, "data_offsets": offsets or [0, 8]}


# -- one safetensors file --------------------------------------------------------------------------------

HEADER_CASES = {
    "truncated data": ({"a": F32}, b"\0" * 5, None, "file is truncated"),
    "offsets past the data": ({"a": F32, "b": entry(offsets=[8, 16])}, b"\0" * 8, None, "file is truncated"),
    "trailing bytes": ({"a": F32}, b"\0" * 12, None, "4 trailing bytes"),
    "header length past the end": ({"a": F32}, b"", 4096, "runs past the end of the file"),
    "header length over 100 MB": ({"a": F32}, b"", 200_000_000, "100 MB"),
    "not JSON": (b"{not json", b"", None, "not valid JSON"),
    "not an object": (b"[1, 2]", b"", None, "not an object"),
    "not UTF-8": (b'{"\xff\xfe": 1}', b"", None, "not UTF-8"),
    "duplicate key": (b'{"a": {}, "a": {}}', b"", None, "lists key 'a' twice"),
    "metadata not strings": ({"__metadata__": {"n": 1}, "a": F32}, b"\0" * 8, None, "__metadata__"),
    "entry not an object": ({"a": [1, 2]}, b"", None, "not an object"),
    "missing dtype": ({"a": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "lacks dtype"),
    "missing shape": ({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8, None, "lacks shape"),
    "missing offsets": ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, None, "lacks data_offsets"),
    "dtype not a string": ({"a": entry(dtype=7)}, b"\0" * 8, None, "dtype must be a string"),
    "unknown dtype": ({"a": entry(dtype="Q4")}, b"\0" * 8, None, "unknown dtype 'Q4'"),
    "shape not a list": ({"a": entry(shape="2")}, b"\0" * 8, None, "shape must be a list"),
    "negative dimension": ({"a": entry(shape=[-2])}, b"\0" * 8, None, "shape must be a list"),
    "boolean dimension": ({"a": entry(shape=[True, 2])}, b"\0" * 8, None, "shape must be a list"),
    "offsets not a pair": ({"a": entry(offsets=[0, 4, 8])}, b"\0" * 8, None, "data_offsets must be two"),
    "offsets not integers": ({"a": entry(offsets=[0, 8.0])}, b"\0" * 8, None, "data_offsets must be two"),
    "offsets reversed": ({"a": entry(offsets=[8, 0])}, b"\0" * 8, None, "end before they begin"),
    "size mismatch": ({"a": entry(shape=[3])}, b"\0" * 8, None, "F32 x [3] needs 12"),
    "overlap": ({"a": F32, "b": entry(shape=[1], offsets=[4, 8])}, b"\0" * 8, None, "overlaps tensor"),
    "hole at start": ({"a": entry(offsets=[4, 12])}, b"\0" * 12, None, "4 unused bytes before tensor 'a'"),
    "hole between": ({"a": F32, "b": entry(shape=[1], offsets=[12, 16])}, b"\0" * 16, None, "unused bytes"),
}


@pytest.mark.parametrize(("header", "data", "length", "phrase"), HEADER_CASES.values(), ids=HEADER_CASES.keys())
def test_bad_header(raw_file, header, data: bytes, length: int | None, phrase: str) -> None:
    path = raw_file(header, data, length=length)
    with pytest.raises(CheckpointError) as exc_info:
        read_header(path)
    check(exc_info, CheckpointError, "model.safetensors", phrase)
    with pytest.raises(CheckpointError) as exc_info:  # the reader surfaces the same error while opening
        open_checkpoint(path.parent)
    check(exc_info, CheckpointError, "model.safetensors", phrase)


def test_file_shorter_than_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(CheckpointError) as exc_info:
        read_header(path)
    check(exc_info, CheckpointError, "model.safetensors", "shorter than the 8-byte")


def test_dtype_torch_cannot_read(raw_file) -> None:
    path = raw_file({"packed": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, b"\0\0")
    with open_checkpoint(path.parent) as ckpt, pytest.raises(CheckpointError) as exc_info:
        ckpt.tensor("packed")
    check(exc_info, CheckpointError, "model.safetensors", "tensor 'packed' has dtype F4, which torch")


# -- non-finite weights ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, getattr(torch, "float8_e4m3fn", torch.float16)], ids=str
)
def test_nan_and_inf_weights(tmp_path: Path, make_model, dtype: torch.dtype) -> None:
    weight = torch.ones(4, 3)
    weight[1, 0], weight[2, 2] = float("nan"), float("inf")
    weight = weight.to(dtype)  # float8_e4m3fn has no Inf: torch saturates it to 448, the NaN stays
    folder = make_model(tmp_path / "nan", {"model.embed_tokens.weight": weight})
    with open_checkpoint(folder) as ckpt:
        with pytest.raises(NonFiniteWeightsError) as exc_info:
            ckpt.tensor("model.embed_tokens.weight")
        check(exc_info, NonFiniteWeightsError, "model.safetensors", "NaN/Inf values")
        with pytest.raises(NonFiniteWeightsError) as exc_info:
            ckpt.rows("model.embed_tokens.weight", [1, 0])
        check(exc_info, NonFiniteWeightsError, "model.safetensors", "holds 1 NaN/Inf values")
        assert torch.equal(ckpt.rows("model.embed_tokens.weight", [0, 3]), torch.ones(2, 3))  # clean rows read fine


# -- index -----------------------------------------------------------------------------------------------


@pytest.fixture()
def sharded_copy(sharded: Path, tmp_path: Path) -> Path:
    """A writable copy of the sharded fixture, to break."""
    return Path(shutil.copytree(sharded, tmp_path / "sharded"))


def rewrite_index(folder: Path, change) -> None:
    path = folder / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    change(index["weight_map"])
    path.write_text(json.dumps(index))


def test_index_lists_missing_shard(sharded_copy: Path) -> None:
    (sharded_copy / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(sharded_copy)
    check(
        exc_info,
        CheckpointError,
        "model.safetensors.index.json",
        "'model-00002-of-00003.safetensors', which is missing",
    )


@pytest.mark.parametrize("target", ["../x.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_index_points_outside_the_folder(sharded_copy: Path, target: str) -> None:
    rewrite_index(sharded_copy, lambda weight_map: weight_map.update({"lm_head.weight": target}))
    with pytest.raises(UnsafeCheckpointError) as exc_info:
        open_checkpoint(sharded_copy)
    check(exc_info, UnsafeCheckpointError, "model.safetensors.index.json", "outside the model folder")


def test_symlinked_shard_escaping_the_folder(sharded_copy: Path, tmp_path: Path) -> None:
    shard = sharded_copy / "model-00001-of-00003.safetensors"
    outside = tmp_path / "outside.safetensors"
    shard.rename(outside)
    os.symlink(outside, shard)
    with pytest.raises(UnsafeCheckpointError) as exc_info:
        open_checkpoint(sharded_copy)
    check(exc_info, UnsafeCheckpointError, "model-00001-of-00003.safetensors", "outside the model folder")


def test_index_names_a_tensor_the_shard_lacks(sharded_copy: Path) -> None:
    rewrite_index(
        sharded_copy, lambda weight_map: weight_map.update({"ghost.weight": "model-00001-of-00003.safetensors"})
    )
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(sharded_copy)
    check(exc_info, CheckpointError, "model.safetensors.index.json", "'ghost.weight'")
    assert "does not hold it" in str(exc_info.value)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("{oops", "not valid JSON"),
        ('{"metadata": {}}', "no 'weight_map'"),
        ("[]", "no 'weight_map'"),
        ('{"weight_map": {}}', "lists no tensors"),
        ('{"weight_map": {"a": 3}}', "not a file name"),
    ],
    ids=["not JSON", "no weight_map", "not an object", "empty weight_map", "non-string entry"],
)
def test_broken_index(sharded_copy: Path, text: str, phrase: str) -> None:
    (sharded_copy / "model.safetensors.index.json").write_text(text)
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(sharded_copy)
    check(exc_info, CheckpointError, "model.safetensors.index.json", phrase)


def test_duplicate_tensor_across_shards(tmp_path: Path, make_model, tiny) -> None:
    folder = make_model(tmp_path / "dup", tiny, shards=2)
    shutil.copy(folder / "model-00001-of-00002.safetensors", folder / "model-00003-of-00002.safetensors")
    with pytest.raises(CheckpointError) as exc_info:
        open_checkpoint(folder)
    check(
        exc_info, CheckpointError, "model-00003-of-00002.safetensors", "is also in 'model-00001-of-00002.safetensors'"
    )


# -- folders ---------------------------------------------------------------------------------------------


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for action in (open_checkpoint, discover_models):
        with pytest.raises(CheckpointError) as exc_info:
            action(tmp_path / "empty")
        check(exc_info, CheckpointError, "empty", "the folder is empty")


def test_folder_without_model(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "README.md").write_text("hi")
    for action in (open_checkpoint, discover_models):
        with pytest.raises(CheckpointError) as exc_info:
            action(tmp_path / "docs")
        check(exc_info, CheckpointError, "docs", "no model found")


def test_missing_path(tmp_path: Path) -> None:
    for action in (open_checkpoint, discover_models):
        with pytest.raises(CheckpointError) as exc_info:
            action(tmp_path / "nowhere")
        check(exc_info, CheckpointError, "nowhere", "no such file or folder")


@pytest.mark.parametrize("file", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt"])
def test_pickled_weights_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file: str) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for owner, attr in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(owner, attr, forbidden)
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / file).write_bytes(b"\x80\x04cos\nsystem\n.")  # a malicious pickle must never get the chance
    (folder / "training_args.bin").write_bytes(b"x")
    assert discover_models(folder) == [folder]
    for target in (folder, folder / file):
        with pytest.raises(UnsafeCheckpointError) as exc_info:
            open_checkpoint(target)
        check(exc_info, UnsafeCheckpointError, file, f"refusing to unpickle '{file}'")
        assert "convert it to safetensors" in str(exc_info.value)


def test_broken_config(single: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(single, tmp_path / "badconfig"))
    for text, phrase in [("{", "config is not valid JSON"), ("[1]", "not an object")]:
        (folder / "config.json").write_text(text)
        with pytest.raises(CheckpointError) as exc_info:
            open_checkpoint(folder)
        check(exc_info, CheckpointError, "config.json", phrase)


def test_not_a_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hi")
    for action in (open_checkpoint, discover_models):
        with pytest.raises(CheckpointError) as exc_info:
            action(path)
        check(exc_info, CheckpointError, "notes.txt", "not a model folder")
