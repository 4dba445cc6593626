"""The GGUF reader gives the Hugging Face model back: names, shapes, values, config, vocabulary, metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf.constants import GGMLQuantizationType as Q

from lineage.arch import resolve_model
from lineage.compare.similarity import sketch_distance_matrix
from lineage.fingerprint.pipeline import FingerprintOptions, cache_key, fingerprint_model
from lineage.io import open_checkpoint
from lineage.io.gguf_header import read_gguf_header
from lineage.io.gguf_reader import GGUFCheckpoint
from tests.io.test_gguf_support import (
    HEAD_DIM,
    HEADS,
    HIDDEN,
    KV_HEADS,
    LAYERS,
    MODEL_TYPE,
    TOKENS,
    VOCAB,
    expected,
    gguf_name,
    hf_tensors,
    write_gguf,
    write_hf_folder,
)

ARCHS = sorted(MODEL_TYPE)
LAYOUT = {"llama": "llama", "qwen2": "llama", "qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2",
          "gemma3": "gemma3", "phi3": "phi3"}  # fmt: skip


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0, Q.Q4_0], ids=lambda q: q.name)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_tensor_comes_back_under_its_hugging_face_name(tmp_path: Path, arch: str, qtype: Q) -> None:
    tensors = hf_tensors(arch)
    path = write_gguf(tmp_path / "m.gguf", arch, tensors, qtype=qtype)
    want = expected(arch, tensors, qtype)
    with open_checkpoint(path) as ckpt:
        assert isinstance(ckpt, GGUFCheckpoint)
        assert set(ckpt.names()) == set(tensors)
        for name, w in tensors.items():
            assert ckpt.info(name).shape == tuple(w.shape), name
            got = ckpt.tensor(name)
            np.testing.assert_allclose(got.numpy(), want[name], rtol=0, atol=1e-6, err_msg=name)
            tolerance = 1e-6 if qtype == Q.F32 else 0.5  # quantisation error of 8 and 4 bits on N(0, 1)
            assert float((got - w).abs().max()) <= tolerance, name
        model = resolve_model(ckpt)
        assert model.spec.name == LAYOUT[arch]
        assert (model.num_heads, model.num_kv_heads, model.head_dim) == (HEADS, KV_HEADS, HEAD_DIM)
        assert ckpt.config["model_type"] == MODEL_TYPE[arch]
        assert ckpt.num_parameters == sum(w.numel() for w in tensors.values())


def test_llama_q_and_k_rows_are_unpermuted(tmp_path: Path) -> None:
    tensors = hf_tensors("llama")
    path = write_gguf(tmp_path / "m.gguf", "llama", tensors)
    header = read_gguf_header(path)
    stored = {r.name: r for r in header.tensors}
    with open_checkpoint(path) as ckpt:
        for hf in ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
            rec = stored[gguf_name("llama", hf)]
            raw = np.fromfile(path, dtype=np.float32, count=rec.nbytes // 4, offset=rec.start).reshape(rec.dims[::-1])
            assert not np.array_equal(raw, tensors[hf].numpy())  # the file really holds permuted rows
            assert torch.equal(ckpt.tensor(hf), tensors[hf])


def test_llama_q_and_k_biases_are_unpermuted_too(tmp_path: Path) -> None:
    tensors = hf_tensors("llama")
    gen = torch.Generator().manual_seed(5)
    for x, rows in (("q", HEADS * HEAD_DIM), ("k", KV_HEADS * HEAD_DIM), ("v", KV_HEADS * HEAD_DIM)):
        tensors[f"model.layers.0.self_attn.{x}_proj.bias"] = torch.randn(rows, generator=gen)
    with open_checkpoint(write_gguf(tmp_path / "m.gguf", "llama", tensors)) as ckpt:
        for x in "qkv":
            name = f"model.layers.0.self_attn.{x}_proj.bias"
            assert torch.equal(ckpt.tensor(name), tensors[name]), name
            assert torch.equal(ckpt.rows(name, [1, 0, 2]), tensors[name][[1, 0, 2]]), name


def test_gemma_norms_lose_the_plus_one_and_take_their_gemma_names(tmp_path: Path) -> None:
    tensors = hf_tensors("gemma3")
    with open_checkpoint(write_gguf(tmp_path / "g.gguf", "gemma3", tensors)) as ckpt:
        layer = "model.layers.0."
        for role in ("pre_feedforward_layernorm", "post_attention_layernorm", "post_feedforward_layernorm",
                     "self_attn.q_norm", "input_layernorm"):  # fmt: skip
            name = f"{layer}{role}.weight"
            assert float((ckpt.tensor(name) - tensors[name]).abs().max()) < 1e-6, name
        assert ckpt.info(f"{layer}pre_feedforward_layernorm.weight").gguf_name == "blk.0.ffn_norm.weight"
        assert ckpt.info(f"{layer}post_attention_layernorm.weight").gguf_name == "blk.0.post_attention_norm.weight"
        assert torch.equal(ckpt.tensor(f"{layer}self_attn.q_proj.weight"), tensors[f"{layer}self_attn.q_proj.weight"])


def test_llama_ffn_norm_is_post_attention_layernorm(tmp_path: Path) -> None:
    with open_checkpoint(write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama"))) as ckpt:
        assert ckpt.info("model.layers.0.post_attention_layernorm.weight").gguf_name == "blk.0.ffn_norm.weight"


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0], ids=lambda q: q.name)
def test_row_blocks_and_rows_agree_with_the_whole_tensor(tmp_path: Path, qtype: Q) -> None:
    tensors = hf_tensors("llama", tied=False)
    with open_checkpoint(write_gguf(tmp_path / "m.gguf", "llama", tensors, qtype=qtype)) as ckpt:
        for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                     "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):  # fmt: skip
            whole = ckpt.tensor(name)
            blocks = list(ckpt.row_blocks(name, 3 * HIDDEN * 4))
            assert [start for start, _ in blocks] == sorted(start for start, _ in blocks)
            assert torch.equal(torch.cat([b for _, b in blocks]), whole), name
            if whole.dim() == 2:
                assert len(blocks) > 1
            index = [5, 3, 3, -1, 0, 17, 16, 18]
            assert torch.equal(ckpt.rows(name, index), whole[torch.tensor(index)]), name
        assert ckpt.rows("model.embed_tokens.weight", []).shape == (0, HIDDEN)
        with pytest.raises(IndexError):
            ckpt.rows("model.embed_tokens.weight", [VOCAB])
        assert ckpt.tensor("lm_head.weight", dtype=torch.float64).dtype == torch.float64


def test_config_metadata_and_vocabulary(tmp_path: Path) -> None:
    tensors = hf_tensors("llama")
    with open_checkpoint(write_gguf(tmp_path / "tiny.gguf", "llama", tensors, qtype=Q.Q8_0)) as ckpt:
        assert ckpt.name == "tiny" and ckpt.folder == tmp_path and ckpt.files == (tmp_path / "tiny.gguf",)
        assert ckpt.config == {
            "model_type": "llama", "num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "intermediate_size": 96,
            "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM,
            "rms_norm_eps": pytest.approx(1e-6), "rope_theta": 10000.0, "max_position_embeddings": 128,
            "vocab_size": VOCAB, "tie_word_embeddings": True,
        }  # fmt: skip
        assert ckpt.metadata["general.name"] == "Tiny Model"
        assert ckpt.metadata["general.base_model.0.name"] == "Tiny Base"
        assert "tokenizer.ggml.tokens" not in ckpt.metadata  # long arrays stay out of the plain metadata
        vocab = ckpt.vocabulary
        assert vocab is not None and vocab.source == "gguf" and len(vocab) == len(TOKENS)
        assert vocab.tokens[3] == " w1" and vocab.tokens[2] == "t0"  # byte-level stand-ins decoded
        assert vocab.special == frozenset({0, 1})
        assert set(ckpt.dtypes) == {"F32", "Q8_0"}
        assert ckpt.info("model.embed_tokens.weight").dtype == "Q8_0"
    with open_checkpoint(write_gguf(tmp_path / "untied.gguf", "llama", hf_tensors("llama", tied=False))) as ckpt:
        assert ckpt.config["tie_word_embeddings"] is False and "lm_head.weight" in ckpt
    with open_checkpoint(write_gguf(tmp_path / "novocab.gguf", "llama", tensors, vocab=False)) as ckpt:
        assert ckpt.vocabulary is None


def test_header_hash_and_cache_key_follow_the_file(tmp_path: Path) -> None:
    tensors = hf_tensors("llama")
    a = write_gguf(tmp_path / "a" / "m.gguf", "llama", tensors)
    b = write_gguf(tmp_path / "b" / "m.gguf", "llama", tensors, qtype=Q.Q8_0)
    with open_checkpoint(a) as ca, open_checkpoint(b) as cb:
        assert ca.header_sha256() != cb.header_sha256()
        assert ca.header_sha256() == GGUFCheckpoint(a).header_sha256()
    options = FingerprintOptions(device="cpu")
    assert cache_key(a, options) != cache_key(b, options)
    assert cache_key(a, options) == cache_key(a.parent, options)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "phi3"])
def test_gguf_and_hugging_face_folder_fingerprint_alike(tmp_path: Path, arch: str) -> None:
    tensors = hf_tensors(arch)
    options = FingerprintOptions(device="cpu", anchors=16)
    fp_gguf = fingerprint_model(write_gguf(tmp_path / "m.gguf", arch, tensors), options)
    fp_hf = fingerprint_model(write_hf_folder(tmp_path / "hf", arch, tensors), options)
    assert float(sketch_distance_matrix([fp_gguf], [fp_hf])[0, 0]) < 1e-3
    other = fingerprint_model(write_hf_folder(tmp_path / "other", arch, hf_tensors(arch, seed=1)), options)
    assert float(sketch_distance_matrix([fp_gguf], [other])[0, 0]) > 1e-2  # the comparison can fail


def test_closed_reader_refuses_reads(tmp_path: Path) -> None:
    ckpt = open_checkpoint(write_gguf(tmp_path / "m.gguf", "llama", hf_tensors("llama")))
    ckpt.close()
    with pytest.raises(ValueError, match="closed"):
        ckpt.tensor("model.norm.weight")
