"""GGUF of mixtures of experts and latent attention: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2/V3.

Tiny models are built by transformers from its own configs (`tests.arch.zoo`) and converted as llama.cpp
does (`tests.io.gguf_convert`: experts stacked, Q/K permuted for `llama`, `kv_b` split for `deepseek2`).
Every tensor comes back under its Hugging Face name with its values; a GGUF of a noisy copy is derived from
the safetensors base, and a GGUF of an independent seed is not.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.constants import GGMLQuantizationType as Q

from lineage.compare.identity import weight_test
from lineage.errors import CheckpointError, UnsupportedArchitectureError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from tests.io.gguf_convert import hf_tensors, write_gguf

#: transformers model type -> the GGUF architecture llama.cpp converts it as.
GGUF_ARCH = {
    "mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "olmoe": "olmoe",
    "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "olmo2": "olmo2",
}  # fmt: skip
#: The fingerprint test run by default (stacked experts, shared experts and latent attention).
DEFAULT = ("deepseek_v3",)


@pytest.fixture(scope="module")
def root(tmp_path_factory):  # noqa: ANN201 - a Path
    pytest.importorskip("transformers")
    return tmp_path_factory.mktemp("gguf-moe")


def _models(root: Path, model_type: str) -> tuple[Path, Path, Path]:
    from tests.arch import harness

    return harness.models(model_type, root / model_type)


def _same(gguf_path: Path, folder: Path, atol: float) -> None:
    expected = hf_tensors(folder)
    with open_checkpoint(gguf_path) as reader:
        assert sorted(reader.names()) == sorted(expected)
        for name, want in expected.items():
            got = reader.tensor(name).numpy()
            assert got.shape == tuple(want.shape), name
            assert np.allclose(got, want.numpy(), atol=atol), name
            blocks = [b for _, b in reader.row_blocks(name, 1024)]  # streamed in rows, as the probes read it
            assert np.array_equal(np.concatenate([b.numpy() for b in blocks]) if got.ndim > 1 else blocks[0], got)


@pytest.mark.parametrize("model_type", sorted(GGUF_ARCH))
def test_every_tensor_comes_back_under_its_hugging_face_name(root: Path, model_type: str) -> None:
    base, _, _ = _models(root, model_type)
    _same(write_gguf(base, root / model_type / "m.gguf", GGUF_ARCH[model_type]), base, 1e-6)


def test_quantised_expert_stacks_are_read_expert_by_expert(root: Path) -> None:
    base, _, _ = _models(root, "qwen3_moe")
    path = write_gguf(base, root / "q8.gguf", "qwen3moe", qtype=Q.Q8_0)
    with open_checkpoint(path) as reader:
        stack = gguf.quants.dequantize(gguf.quants.quantize(
            np.stack([hf_tensors(base)[f"model.layers.1.mlp.experts.{e}.up_proj.weight"].numpy() for e in range(4)]),
            Q.Q8_0), Q.Q8_0)  # fmt: skip
        for e in range(4):
            got = reader.tensor(f"model.layers.1.mlp.experts.{e}.up_proj.weight").numpy()
            assert np.array_equal(got, stack[e]), e
            assert np.array_equal(reader.rows(f"model.layers.1.mlp.experts.{e}.up_proj.weight", [5, 0]).numpy(),
                                  stack[e][[5, 0]])  # fmt: skip


def test_latent_attention_stored_whole_or_split_reads_alike(root: Path) -> None:
    base, _, _ = _models(root, "deepseek_v3")
    split = write_gguf(base, root / "split.gguf", "deepseek2")
    whole = write_gguf(base, root / "whole.gguf", "deepseek2", split_kv_b=False)
    name = "model.layers.2.self_attn.kv_b_proj.weight"
    with open_checkpoint(split) as a, open_checkpoint(whole) as b:
        assert not [n for n in a.names() if n.endswith((".k_b_proj.weight", ".v_b_proj.weight"))]
        assert np.array_equal(a.tensor(name).numpy(), b.tensor(name).numpy())
        assert a.config["model_type"] == "deepseek_v3"  # the router's load-balancing bias marks V3
        assert a.num_parameters == b.num_parameters == sum(t.numel() for t in hf_tensors(base).values())


@pytest.mark.parametrize(
    "model_type", [pytest.param(t, marks=[] if t in DEFAULT else [pytest.mark.slow]) for t in sorted(GGUF_ARCH)]
)
def test_a_gguf_copy_is_derived_from_its_safetensors_base_and_an_independent_seed_is_not(
    root: Path, model_type: str
) -> None:
    base, copy, other = _models(root, model_type)
    arch = GGUF_ARCH[model_type]
    options = FingerprintOptions(device="cpu")
    reference = fingerprint_model(base, options)
    fp_copy = fingerprint_model(write_gguf(copy, root / model_type / "copy.gguf", arch), options)
    fp_other = fingerprint_model(write_gguf(other, root / model_type / "other.gguf", arch), options)
    assert fp_copy.settings["layout"] == reference.settings["layout"]
    assert weight_test(fp_copy, reference).log10_p < -10
    assert weight_test(fp_other, reference).log10_p >= -3


def _rewrite(src: Path, dst: Path, change) -> Path:  # noqa: ANN001
    """`src` with its tensors passed through `change(name, array) -> [(name, array), ...]`."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, "deepseek2")
    for key in ("deepseek2.block_count", "deepseek2.embedding_length", "deepseek2.attention.head_count"):
        writer.add_uint32(key, int(reader.fields[key].parts[-1][0]))
    for t in reader.tensors:
        data = np.array(t.data).reshape(tuple(reversed([int(d) for d in t.shape])))
        for name, array in change(t.name, data):
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def test_a_stack_or_split_of_the_wrong_shape_is_one_line(root: Path) -> None:
    base, _, _ = _models(root, "deepseek_v3")
    src = write_gguf(base, root / "src.gguf", "deepseek2")
    flat = _rewrite(src, root / "flat.gguf", lambda n, a: [(n, a.reshape(-1, a.shape[-1]) if "_exps" in n else a)])
    with pytest.raises(CheckpointError, match="ffn_.*_exps.*not \\[in, out, experts\\]"):
        open_checkpoint(flat)
    cut = _rewrite(src, root / "cut.gguf", lambda n, a: [(n, a[:, :, :-1] if "attn_v_b" in n else a)])
    with pytest.raises(CheckpointError, match="attn_k_b.*attn_v_b.*not the two halves"):
        open_checkpoint(cut)


def test_a_gguf_architecture_lineage_does_not_map_is_refused_by_name(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "gpt2.gguf", "gpt2")  # Conv1D, transposed by the converter: unchecked
    writer.add_block_count(1)
    for name in ("token_embd.weight", "blk.0.attn_qkv.weight", "blk.0.ffn_up.weight"):
        writer.add_tensor(name, np.ones((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedArchitectureError, match="gpt2.gguf: GGUF architecture 'gpt2' is not mapped"):
        open_checkpoint(tmp_path / "gpt2.gguf")
