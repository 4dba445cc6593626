"""GGUF of mixtures of experts, latent attention and the other layouts whose converters change values.

Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2/V3, OLMo 2, GPT-2, Falcon, gpt-oss, Llama 4 and Granite-MoE:
tiny models are built by transformers from its own configs (`tests.arch.zoo`) and converted as llama.cpp
does (`tests.io.gguf_convert`: experts stacked, Q/K permuted for `llama` and `granitemoe`, `kv_b` split for
`deepseek2`, Conv1D transposed for `gpt2`, `query_key_value` regrouped for `falcon`, stacked experts split and
transposed to `[E, out, in]`, gate and up stacks optionally fused). Every tensor comes back under its Hugging
Face name with its values; a GGUF of a noisy copy is derived from the safetensors base, and a GGUF of an
independent seed is not.
"""

from __future__ import annotations

import json
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
from tests.probe.test_pinned_numbers import assert_same_numbers

#: transformers model type -> the GGUF architecture llama.cpp converts it as.
GGUF_ARCH = {
    "mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe", "olmoe": "olmoe",
    "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "olmo2": "olmo2", "gpt2": "gpt2", "falcon": "falcon",
    "gpt_oss": "gpt-oss", "llama4_text": "llama4", "granitemoe": "granitemoe",
}  # fmt: skip
#: The fingerprint test run by default (stacked experts, shared experts and latent attention; gpt-oss's derived
#: copy is in the MXFP4 test); the rest are slow.
DEFAULT = ("deepseek_v3",)
#: The layouts whose GGUF is read back through transposes or re-joined stacks, each fingerprinted from both
#: files (Conv1D and gpt-oss by default).
REJOINED = {"gpt2": True, "gpt_oss": True, "falcon": False, "llama4_text": False, "granitemoe": False}


@pytest.fixture(scope="module")
def root(tmp_path_factory):  # noqa: ANN201 - a Path
    pytest.importorskip("transformers")
    return tmp_path_factory.mktemp("gguf-moe")


def _models(root: Path, model_type: str) -> tuple[Path, Path, Path]:
    from tests.arch import harness

    return harness.models(model_type, root / model_type)


def _convert(folder: Path, path: Path, model_type: str, **options) -> Path:  # noqa: ANN003
    """`folder` as llama.cpp converts it; a Falcon as falcon-7b's config.json describes it (no `num_kv_heads`, which
    transformers 5 writes beside `multi_query` and the converter reads as the number of key/value groups)."""
    config = json.loads((folder / "config.json").read_text())
    if model_type == "falcon":
        config = {k: v for k, v in config.items() if k not in ("num_kv_heads", "n_head_kv")}
    return write_gguf(folder, path, GGUF_ARCH[model_type], config=config, **options)


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
    _same(_convert(base, root / model_type / "m.gguf", model_type), base, 1e-6)


@pytest.mark.parametrize("model_type", ["qwen3_moe", "gpt_oss", "llama4_text"])
def test_a_fused_gate_up_stack_comes_back_as_the_layout_stores_it(root: Path, model_type: str) -> None:
    base, _, _ = _models(root, model_type)
    path = _convert(base, root / model_type / "fused.gguf", model_type, fuse_gate_up=True)
    assert any(t.name.endswith("ffn_gate_up_exps.weight") for t in gguf.GGUFReader(path).tensors)
    _same(path, base, 1e-6)


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


def test_mxfp4_expert_stacks_are_joined_back_expert_by_expert(root: Path) -> None:
    """gpt-oss GGUFs store their experts in MXFP4: each expert's gate_up is joined back from its own dequantised
    rows of the gate and up stacks (alternating, transposed), as the file's whole stacks give them."""
    base, copy, _ = _models(root, "gpt_oss")
    path = _convert(base, root / "mxfp4.gguf", "gpt_oss", qtype=Q.MXFP4)
    stored = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in gguf.GGUFReader(path).tensors}
    gate, up = stored["blk.1.ffn_gate_exps.weight"], stored["blk.1.ffn_up_exps.weight"]
    want = np.stack([gate, up], axis=2).reshape(gate.shape[0], -1, gate.shape[2]).transpose(0, 2, 1)
    with open_checkpoint(path) as reader:
        assert reader.info("model.layers.1.mlp.experts.gate_up_proj").dtype == "MXFP4"
        assert np.array_equal(reader.tensor("model.layers.1.mlp.experts.gate_up_proj").numpy(), want)
        assert np.array_equal(reader.rows("model.layers.1.mlp.experts.gate_up_proj", [3, 1]).numpy(), want[[3, 1]])
    options = FingerprintOptions(device="cpu")
    fp_copy = fingerprint_model(_convert(copy, root / "mxfp4-copy.gguf", "gpt_oss", qtype=Q.MXFP4), options)
    assert weight_test(fp_copy, fingerprint_model(base, options)).log10_p < -10


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
    options = FingerprintOptions(device="cpu")
    reference = fingerprint_model(base, options)
    fp_copy = fingerprint_model(_convert(copy, root / model_type / "copy.gguf", model_type), options)
    fp_other = fingerprint_model(_convert(other, root / model_type / "other.gguf", model_type), options)
    assert fp_copy.settings["layout"] == reference.settings["layout"]
    assert weight_test(fp_copy, reference).log10_p < -10
    assert weight_test(fp_other, reference).log10_p >= -3


@pytest.mark.parametrize(
    "model_type", [pytest.param(t, marks=[] if default else [pytest.mark.slow]) for t, default in REJOINED.items()]
)
def test_a_gguf_fingerprints_as_its_safetensors_checkpoint(root: Path, model_type: str) -> None:
    base, _, _ = _models(root, model_type)
    options = FingerprintOptions(device="cpu")
    reference = fingerprint_model(base, options)
    fp = fingerprint_model(_convert(base, root / model_type / "base.gguf", model_type), options)
    assert fp.settings["layout"] == reference.settings["layout"] == model_type
    assert_same_numbers(fp, reference)  # F32: every sketch, response and identity response as from safetensors
    assert weight_test(fp, reference).log10_p == weight_test(reference, reference).log10_p


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


def _tiny_gguf(path: Path, arch: str, names: tuple[str, ...], kv_heads: int | None = None) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    if kv_heads is not None:
        writer.add_head_count_kv(kv_heads)
    for name in names:
        writer.add_tensor(name, np.ones((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_architecture_lineage_does_not_map_is_refused_by_name(tmp_path: Path) -> None:
    # Phi-2's converter changes are unchecked: refused, never read under a guess.
    path = _tiny_gguf(tmp_path / "phi2.gguf", "phi2", ("token_embd.weight", "blk.0.attn_qkv.weight"))
    with pytest.raises(UnsupportedArchitectureError, match="phi2.gguf: GGUF architecture 'phi2' is not mapped"):
        open_checkpoint(path)


def test_gguf_variants_the_layouts_do_not_read_are_refused_by_name(tmp_path: Path) -> None:
    grouped = _tiny_gguf(tmp_path / "falcon40b.gguf", "falcon", ("token_embd.weight", "blk.0.attn_qkv.weight"), 8)
    with pytest.raises(UnsupportedArchitectureError, match="falcon40b.gguf: falcon.attention.head_count_kv is 8"):
        open_checkpoint(grouped)
    norm2 = _tiny_gguf(tmp_path / "falcon-ln.gguf", "falcon", ("token_embd.weight", "blk.0.attn_norm_2.weight"), 1)
    with pytest.raises(UnsupportedArchitectureError, match="attn_norm_2.weight' is Falcon-40B/180B's second norm"):
        open_checkpoint(norm2)
    shared = _tiny_gguf(tmp_path / "granite.gguf", "granitemoe", ("token_embd.weight", "blk.0.ffn_gate_shexp.weight"))
    with pytest.raises(UnsupportedArchitectureError, match="ffn_gate_shexp.weight' is Granite-MoE-Shared"):
        open_checkpoint(shared)
    bias = _tiny_gguf(tmp_path / "oss.gguf", "gpt-oss", ("token_embd.weight", "blk.0.ffn_gate_up_exps.bias"))
    with pytest.raises(UnsupportedArchitectureError, match="ffn_gate_up_exps.bias' is a fused gate and up expert"):
        open_checkpoint(bias)
