"""The supported layouts read back exactly, lazily, and with the facts the header states."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lineage.io.reader as reader_module
from lineage.io import CheckpointReader, discover_models, is_model_folder, open_checkpoint, read_header
from lineage.io.reader import _runs

FLOAT8 = [d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)) if d is not None]


def assert_reads_back(ckpt: CheckpointReader, tensors: dict[str, torch.Tensor]) -> None:
    assert ckpt.names() == sorted(tensors)
    for name, expected in tensors.items():
        got = ckpt.tensor(name, dtype=expected.dtype)
        assert got.dtype == expected.dtype and torch.equal(got, expected), name


# -- layouts ---------------------------------------------------------------------------------------------


def test_single_file_reads_back_exactly(single: Path, tiny: dict[str, torch.Tensor]) -> None:
    with open_checkpoint(single) as ckpt:
        assert ckpt.name == "tiny-llama" and ckpt.folder == single
        assert ckpt.files == (single / "model.safetensors",)
        assert ckpt.config["model_type"] == "llama"
        assert_reads_back(ckpt, tiny)
        assert ckpt.num_parameters == sum(t.numel() for t in tiny.values())
        assert ckpt.dtypes == ("F32",)
        assert len(ckpt) == len(tiny) and "lm_head.weight" in ckpt and "nope" not in ckpt
        assert [i.name for i in ckpt] == sorted(tiny)


def test_info_offsets_are_absolute_byte_ranges(single: Path, tiny: dict[str, torch.Tensor]) -> None:
    data = (single / "model.safetensors").read_bytes()
    with open_checkpoint(single) as ckpt:
        info = ckpt.info("model.layers.1.mlp.up_proj.weight")
    assert (info.dtype, info.shape, info.file) == ("F32", (12, 8), "model.safetensors")
    assert info.numel == 96 and info.nbytes == 384
    assert data[info.start : info.end] == tiny[info.name].numpy().tobytes()


def test_sharded_with_index(sharded: Path, tiny: dict[str, torch.Tensor]) -> None:
    weight_map = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    with open_checkpoint(sharded) as ckpt:
        assert [f.name for f in ckpt.files] == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
        assert {n: ckpt.info(n).file for n in ckpt.names()} == weight_map
        assert_reads_back(ckpt, tiny)


def test_several_files_without_index(tmp_path: Path, make_model, tiny: dict[str, torch.Tensor]) -> None:
    folder = make_model(tmp_path / "multi", tiny, shards=2, index=False)
    with open_checkpoint(folder) as ckpt:
        assert len(ckpt.files) == 2
        assert_reads_back(ckpt, tiny)


def test_model_safetensors_wins_over_stray_copies(single: Path, tmp_path: Path, tiny) -> None:
    # Mistral repos ship consolidated.safetensors next to the HF weights; transformers reads model.safetensors.
    folder = tmp_path / "mistral-like"
    shutil.copytree(single, folder)
    shutil.copy(folder / "model.safetensors", folder / "consolidated.safetensors")
    with open_checkpoint(folder) as ckpt:
        assert ckpt.files == (folder / "model.safetensors",)


def test_config_absent_is_empty(tmp_path: Path, make_model, tiny) -> None:
    with open_checkpoint(make_model(tmp_path / "noconfig", tiny, config=None)) as ckpt:
        assert ckpt.config == {}


def test_single_file_path(single: Path, tmp_path: Path, tiny) -> None:
    with open_checkpoint(single / "model.safetensors") as ckpt:
        assert ckpt.name == "tiny-llama" and ckpt.config["model_type"] == "llama"
    lone = tmp_path / "my-model.safetensors"
    shutil.copy(single / "model.safetensors", lone)
    with open_checkpoint(lone) as ckpt:
        assert ckpt.name == "my-model" and ckpt.config == {}
        assert_reads_back(ckpt, tiny)


@pytest.mark.parametrize(("dtype", "code"), [(torch.float16, "F16"), (torch.bfloat16, "BF16"), (torch.float64, "F64")])
def test_half_precision_reads_back_exactly(tmp_path: Path, make_model, tiny, dtype: torch.dtype, code: str) -> None:
    stored = {n: t.to(dtype) for n, t in tiny.items()}
    with open_checkpoint(make_model(tmp_path / code, stored)) as ckpt:
        assert ckpt.dtypes == (code,)
        assert_reads_back(ckpt, stored)
        name = "model.embed_tokens.weight"
        assert torch.equal(ckpt.tensor(name), stored[name].float())  # the float32 default is exact


@pytest.mark.parametrize("dtype", FLOAT8, ids=str)
def test_float8_converts_to_float32_exactly(tmp_path: Path, make_model, tiny, dtype: torch.dtype) -> None:
    stored = {n: t.to(dtype) for n, t in tiny.items()}
    with open_checkpoint(make_model(tmp_path / "f8", stored)) as ckpt:
        for name, tensor in stored.items():
            assert torch.equal(ckpt.tensor(name), tensor.float())
        assert torch.equal(ckpt.rows("lm_head.weight", [3, 1]), stored["lm_head.weight"].float()[[3, 1]])


def test_mixed_dtypes_and_integer_tensors(tmp_path: Path, make_model, tiny) -> None:
    stored = dict(tiny) | {
        "model.norm.weight": tiny["model.norm.weight"].bfloat16(),
        "g_idx": torch.arange(5),
        "step": torch.tensor(3),
    }
    with open_checkpoint(make_model(tmp_path / "mixed", stored)) as ckpt:
        assert ckpt.dtypes == ("BF16", "F32", "I64")
        assert torch.equal(ckpt.tensor("g_idx", dtype=torch.int64), torch.arange(5))
        assert ckpt.info("step").shape == () and ckpt.tensor("step").item() == 3.0
        with pytest.raises(ValueError, match="scalar"):
            ckpt.rows("step", [0])


def test_tied_embeddings_report_what_is_there(tmp_path: Path, make_model, make_tensors) -> None:
    tied = make_tensors(tied=True)
    with open_checkpoint(make_model(tmp_path / "tied", tied)) as ckpt:
        assert "lm_head.weight" not in ckpt and "model.embed_tokens.weight" in ckpt
        with pytest.raises(KeyError, match="lm_head.weight"):
            ckpt.info("lm_head.weight")


def test_architecture_names_and_shapes(tmp_path: Path, make_model, make_tensors) -> None:
    gen = torch.Generator().manual_seed(1)
    phi3 = {
        "model.layers.0.self_attn.qkv_proj.weight": torch.randn(16, 8, generator=gen),  # q 8 + k 4 + v 4
        "model.layers.0.mlp.gate_up_proj.weight": torch.randn(24, 8, generator=gen),
    }
    qwen_bias = {
        f"model.layers.0.self_attn.{p}_proj.bias": torch.randn(n, generator=gen) for p, n in zip("qkv", (8, 4, 4))
    }
    gemma3 = make_tensors(prefix="language_model.model.", tied=True)
    stored = phi3 | qwen_bias | gemma3
    with open_checkpoint(make_model(tmp_path / "arch", stored)) as ckpt:
        assert_reads_back(ckpt, stored)
        assert ckpt.info("model.layers.0.self_attn.qkv_proj.weight").shape == (16, 8)
        assert ckpt.info("model.layers.0.self_attn.k_proj.bias").shape == (4,)
        gqa_k = ckpt.info("language_model.model.layers.1.self_attn.k_proj.weight")
        gqa_q = ckpt.info("language_model.model.layers.1.self_attn.q_proj.weight")
        assert (gqa_q.shape, gqa_k.shape) == ((8, 8), (4, 8))
        assert torch.equal(
            ckpt.rows("model.layers.0.self_attn.q_proj.bias", [2, 0]),
            qwen_bias["model.layers.0.self_attn.q_proj.bias"][[2, 0]],
        )


# -- rows ------------------------------------------------------------------------------------------------


def test_rows_follow_the_index(single: Path, tiny) -> None:
    full = tiny["model.embed_tokens.weight"]
    index = [5, 3, 4, 15, 5, -1, 0]
    with open_checkpoint(single) as ckpt:
        assert torch.equal(ckpt.rows("model.embed_tokens.weight", index), full[index])
        assert torch.equal(ckpt.rows("model.embed_tokens.weight", torch.tensor([7])), full[[7]])
        bf16 = ckpt.rows("model.embed_tokens.weight", [1, 2], dtype=torch.bfloat16)
        assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, full[[1, 2]].bfloat16())
        assert ckpt.rows("model.embed_tokens.weight", []).shape == (0, 8)


def test_rows_read_only_the_runs_asked(single: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[int, int]] = []
    real_runs = reader_module._runs

    def spy(rows: list[int]):
        runs = list(real_runs(rows))
        asked.extend(runs)
        return iter(runs)

    monkeypatch.setattr(reader_module, "_runs", spy)
    with open_checkpoint(single) as ckpt:
        ckpt.rows("model.embed_tokens.weight", [9, 1, 2, 3, 9])
    assert asked == [(1, 4), (9, 10)]
    assert list(_runs([0, 1, 2, 7, 9, 10])) == [(0, 3), (7, 8), (9, 11)]
    assert list(_runs([])) == []


def test_rows_reject_bad_indices(single: Path) -> None:
    with open_checkpoint(single) as ckpt:
        with pytest.raises(IndexError, match="out of range"):
            ckpt.rows("model.embed_tokens.weight", [16])
        with pytest.raises(IndexError):
            ckpt.rows("model.embed_tokens.weight", [-17])
        with pytest.raises(ValueError, match="one-dimensional"):
            ckpt.rows("model.embed_tokens.weight", [[1, 2]])
        with pytest.raises(ValueError, match="integers"):
            ckpt.rows("model.embed_tokens.weight", torch.ones(16, dtype=torch.bool))
        with pytest.raises(ValueError, match="integers"):
            ckpt.rows("model.embed_tokens.weight", [1.0])


# -- headers, hashing, lifetime --------------------------------------------------------------------------


def test_read_header_keeps_raw_bytes_and_metadata(single: Path) -> None:
    path = single / "model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = read_header(path)
    assert header.header_bytes == data[8 : 8 + length]
    assert header.metadata == {"format": "pt"} and header.path == path
    assert min(i.start for i in header.tensors.values()) == 8 + length
    assert max(i.end for i in header.tensors.values()) == len(data)


def test_header_sha256_is_a_content_address(single: Path, sharded: Path, tmp_path: Path, make_model, tiny) -> None:
    with open_checkpoint(single) as ckpt:
        digest = ckpt.header_sha256()
        table = {i.name: {"dtype": i.dtype, "shape": list(i.shape)} for i in ckpt}
    raw = (single / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    expected = hashlib.sha256(json.dumps(table, sort_keys=True, separators=(",", ":")).encode() + raw[: 8 + length])
    assert digest == expected.hexdigest()
    copy = tmp_path / "elsewhere"
    shutil.copytree(single, copy)
    assert open_checkpoint(copy).header_sha256() == digest  # the folder's name and place do not count
    assert open_checkpoint(sharded).header_sha256() != digest  # the same tensors sharded differently do
    changed = dict(tiny) | {"model.norm.weight": torch.ones(9)}
    assert open_checkpoint(make_model(tmp_path / "changed", changed)).header_sha256() != digest


def test_opening_reads_no_tensor_data(single: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("safe_open called while only headers were needed")

    monkeypatch.setattr(reader_module, "safe_open", refuse)
    with open_checkpoint(single) as ckpt:
        assert ckpt.names() and ckpt.num_parameters and ckpt.header_sha256() and ckpt.info("lm_head.weight")


def test_handles_are_cached_and_closed(sharded: Path) -> None:
    ckpt = open_checkpoint(sharded)
    names = ckpt.names()
    for name in names:
        ckpt.tensor(name)  # whole tensors use positioned reads: no handle, no memory map
    assert ckpt._handles == {}
    for name in names:
        if ckpt.info(name).shape:
            ckpt.rows(name, [0])
    assert len(ckpt._handles) == 3
    ckpt.close()
    assert ckpt._handles == {}
    with pytest.raises(ValueError, match="closed"):
        ckpt.tensor(names[0])
    assert "tiny-sharded" in repr(ckpt)


def test_check_finite_can_be_turned_off(tmp_path: Path, make_model, tiny) -> None:
    bad = dict(tiny) | {"model.norm.weight": torch.tensor([1.0, float("nan")])}
    with open_checkpoint(make_model(tmp_path / "nan", bad)) as ckpt:
        assert torch.isnan(ckpt.tensor("model.norm.weight", check_finite=False)).any()


def test_hf_cache_symlinks_into_blobs_are_allowed(single: Path, tmp_path: Path, tiny) -> None:
    repo = tmp_path / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for file in ("model.safetensors", "config.json"):
        shutil.copy(single / file, repo / "blobs" / file)
        os.symlink(Path("../../blobs") / file, snapshot / file)
    with open_checkpoint(snapshot) as ckpt:
        assert_reads_back(ckpt, tiny)


# -- discovery -------------------------------------------------------------------------------------------


def test_discover_a_model_folder_and_a_file(single: Path) -> None:
    assert discover_models(single) == [single]
    assert discover_models(str(single / "model.safetensors")) == [single / "model.safetensors"]
    assert is_model_folder(single) and not is_model_folder(single / "model.safetensors")


def test_discover_a_batch(tmp_path: Path, make_model) -> None:
    tensors = {"w": torch.zeros(2, 2)}
    for name in ("b-model", "a-model"):
        make_model(tmp_path / "batch" / name, tensors)
    make_model(tmp_path / "batch" / "qwen" / "qwen-tiny", tensors)  # org/name one level further down
    make_model(tmp_path / "batch" / ".hidden", tensors)
    (tmp_path / "batch" / "notes").mkdir()
    (tmp_path / "batch" / "legacy").mkdir()
    (tmp_path / "batch" / "legacy" / "pytorch_model.bin").write_bytes(b"not loaded")
    (tmp_path / "batch" / "README.md").write_text("models")
    found = discover_models(tmp_path / "batch")
    assert [p.relative_to(tmp_path / "batch").as_posix() for p in found] == [
        "a-model",
        "b-model",
        "legacy",
        "qwen/qwen-tiny",
    ]


def test_trainer_pickles_alone_do_not_make_a_model(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "training_args.bin").write_bytes(b"x")
    assert not is_model_folder(tmp_path / "run")


def test_sharded_index_via_save_file_subset(tmp_path: Path, tiny) -> None:
    # An index may list a subset of a shard's tensors (HF ignores extras); the reader reports all of them.
    folder = tmp_path / "extra"
    folder.mkdir()
    save_file(tiny, folder / "model-00001-of-00001.safetensors")
    weight_map = {"lm_head.weight": "model-00001-of-00001.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(folder) as ckpt:
        assert ckpt.names() == sorted(tiny)
