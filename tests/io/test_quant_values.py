"""Each quantised format's dequantised values, pinned against the format's reference.

compressed-tensors is checked against the `compressed-tensors` package's own decompressor, bit for bit. The
others have no library that runs here without CUDA; they are checked against their primary source's formula,
transcribed below as the source writes it (llama.cpp's `dequant_model` for FP8 blocks and GPTQ, AutoAWQ's
`dequantize_gemm` in float16, bitsandbytes' pure-torch CPU kernels), on fixtures packed by `tests.quantise`.
Every weight is read three ways (whole, in row blocks whose chunks have seams inside groups and blocks, and as
scattered rows) and must equal the reference in each; and the round trip must land within the format's step.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import pytest
import torch

from lineage.io import open_checkpoint, reader
from lineage.io.quant import registry
from tests.checkpoints import write_checkpoint
from tests.quantise import awq_pack, ct_pack, fp8_block_pack, gptq_pack, int8_pack, mxfp4_pack, nf4_pack

NAME = "model.layers.0.mlp.up_proj"


def _weight(out: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(out, cols, generator=torch.Generator().manual_seed(seed)) * 0.05


def _read(folder: Path, tensors: dict[str, torch.Tensor], qconfig: dict | None) -> tuple[torch.Tensor, ...]:
    """The layer as the reader gives it: whole, from row blocks of 5 rows, and rows [7, 0, 7, last]."""
    config = {"model_type": "llama"} | ({"quantization_config": qconfig} if qconfig else {})
    write_checkpoint(folder, tensors, config)
    with open_checkpoint(folder) as ckpt:
        name = NAME + ".weight"
        assert ckpt.names() == [name]  # the parts are hidden behind the one logical weight
        whole = ckpt.tensor(name)
        row_bytes = whole.shape[1] * 4
        # Chunks of 15 rows, handed out 5 at a time: seams fall inside groups, blocks and words.
        with patch.object(registry, "CHUNK_BYTES", 15 * row_bytes):
            blocks = [(start, b.clone()) for start, b in ckpt.row_blocks(name, 5 * row_bytes)]
        assert [s for s, _ in blocks] == list(range(0, whole.shape[0], 5))
        last = whole.shape[0] - 1
        return whole, torch.cat([b for _, b in blocks]), ckpt.rows(name, [7, 0, 7, last]), whole[[7, 0, 7, last]]


def _check(folder: Path, tensors: dict, qconfig: dict | None, want: torch.Tensor) -> torch.Tensor:
    whole, blocks, rows, want_rows = _read(folder, {NAME + k: v for k, v in tensors.items()}, qconfig)
    assert whole.dtype == torch.float32 and whole.shape == want.shape
    assert torch.equal(whole, want), float((whole - want).abs().max())
    assert torch.equal(blocks, want) and torch.equal(rows, want_rows)
    return whole


# -- references, as the primary sources write them ----------------------------------------------------------


def llama_cpp_dequant_simple(weight: torch.Tensor, scale: torch.Tensor, block_size: list[int]) -> torch.Tensor:
    scale = scale.float()
    for i, size in enumerate(block_size):
        scale = scale.repeat_interleave(size, i)
    scale = scale[tuple(slice(0, size) for size in weight.shape)]
    return weight.float() * scale


def llama_cpp_dequant_gptq(g_idx, qweight, qzeros, scales, bits: int, checkpoint_format: str) -> torch.Tensor:  # noqa: ANN001
    maxq = (2**bits) - 1
    pack_factor = 32 // bits
    wf = torch.tensor(list(range(0, 32, bits)), dtype=torch.int32).unsqueeze(0)
    zeros = torch.bitwise_right_shift(qzeros.unsqueeze(2).expand(-1, -1, pack_factor), wf.unsqueeze(0)).to(
        torch.int16 if bits == 8 else torch.int8
    )
    zeros = torch.bitwise_and(zeros, maxq).reshape(scales.shape)
    weight = torch.bitwise_and(
        torch.bitwise_right_shift(qweight.unsqueeze(1).expand(-1, pack_factor, -1), wf.unsqueeze(-1)).to(
            torch.int16 if bits == 8 else torch.int8
        ),
        maxq,
    )
    weight = weight.reshape(weight.shape[0] * weight.shape[1], weight.shape[2])
    if checkpoint_format == "gptq":
        zeros += 1
    return (scales[g_idx.long()].float() * (weight - zeros[g_idx.long()]).float()).T


def autoawq_dequantize_gemm(qweight, qzeros, scales, group_size: int) -> torch.Tensor:  # noqa: ANN001
    shifts = torch.arange(0, 32, 4)
    iweights = torch.bitwise_right_shift(qweight[:, :, None], shifts[None, None, :]).to(torch.int8)
    iweights = iweights.view(iweights.shape[0], -1)
    izeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
    izeros = izeros.view(izeros.shape[0], -1)
    reverse = torch.arange(iweights.shape[-1], dtype=torch.int32).view(-1, 8)[:, [0, 4, 1, 5, 2, 6, 3, 7]].view(-1)
    iweights, izeros = iweights[:, reverse] & 0xF, izeros[:, reverse] & 0xF
    scales = scales.repeat_interleave(group_size, dim=0)
    izeros = izeros.repeat_interleave(group_size, dim=0)
    return (iweights - izeros) * scales  # [in, out], float16 as AutoAWQ computes it


def bnb_dequantize_4bit(packed, absmax, code, blocksize: int, shape) -> torch.Tensor:  # noqa: ANN001
    a = packed.reshape(-1)
    indices = torch.stack(((a >> 4).to(torch.int64), (a & 0x0F).to(torch.int64)), dim=1).reshape(-1)
    n = shape[0] * shape[1]
    out = code[indices]
    blocks = -(-out.numel() // blocksize)
    out = torch.nn.functional.pad(out, (0, blocks * blocksize - out.numel()))
    return (out.view(-1, blocksize) * absmax.view(-1, 1)).reshape(-1)[:n].reshape(shape)


def bnb_dequantize_blockwise(a, absmax, code, blocksize: int) -> torch.Tensor:  # noqa: ANN001
    out = code[a.reshape(-1).int()]
    blocks = -(-out.numel() // blocksize)
    padded = torch.nn.functional.pad(out, (0, blocks * blocksize - out.numel()))
    return (padded.view(-1, blocksize) * absmax.view(-1, 1)).reshape(-1)[: out.numel()]


# -- the pins ------------------------------------------------------------------------------------------------


def test_fp8_block_scales_equal_llama_cpp(tmp_path: Path) -> None:
    w = _weight(40, 72)  # partial blocks on both edges of 16 x 32 blocks
    parts = fp8_block_pack(w, (16, 32))
    want = llama_cpp_dequant_simple(parts["weight"], parts["weight_scale_inv"], [16, 32])
    qc = {"quant_method": "fp8", "weight_block_size": [16, 32]}
    got = _check(tmp_path, {"." + k: v for k, v in parts.items()}, qc, want)
    assert float((got - w).abs().max()) <= float(w.abs().max()) / 8  # e4m3: 3 mantissa bits


@pytest.mark.parametrize(
    ("bits", "fmt", "act_order", "symmetric"),
    [(4, "gptq", True, False), (4, "gptq_v2", False, False), (4, "gptq", False, True), (8, "gptq_v2", True, False),
     (2, "gptq", False, False)],
)  # fmt: skip
def test_gptq_equals_llama_cpp(tmp_path: Path, bits: int, fmt: str, act_order: bool, symmetric: bool) -> None:
    w = _weight(48, 96, seed=bits)
    parts = gptq_pack(w, bits, 32, act_order=act_order, v2=fmt == "gptq_v2", symmetric=symmetric)
    zeros = torch.unique(parts["qzeros"])
    assert (zeros.numel() == 1) == symmetric  # one zero-point page (the 4-bit fast path's common case) or many
    if act_order:
        assert not torch.equal(parts["g_idx"], torch.arange(96) // 32)  # the gather path is the one tested
    want = llama_cpp_dequant_gptq(parts["g_idx"], parts["qweight"], parts["qzeros"], parts["scales"], bits, fmt)
    qc = {"quant_method": "gptq", "bits": bits, "group_size": 32, "desc_act": act_order, "checkpoint_format": fmt}
    got = _check(tmp_path, {"." + k: v for k, v in parts.items()}, qc, want)
    step = float(parts["scales"].float().max())
    assert float((got - w).abs().max()) <= step  # the round trip lands within one quantisation step


def test_packed_words_are_read_mapped_and_the_rest_copied(tmp_path: Path) -> None:
    """The tensors a format only reads from (GPTQ's and AWQ's words, compressed-tensors' packed values) come as
    views of the file's pages (`map_rows`), so no copy of them is made out of the page cache; the scales, zero
    points and group indices are read into buffers of their own. The values are pinned by the tests above."""
    w = _weight(48, 96)
    gptq_qc = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "checkpoint_format": "gptq"}
    awq_qc = {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True}
    ct_parts, args = ct_pack(w, "pack-quantized", bits=4, group=32, symmetric=True)
    ct_qc = {"quant_method": "compressed-tensors", "format": "pack-quantized",
             "config_groups": {"group_0": {"targets": ["Linear"], "weights": args}}}  # fmt: skip
    cases = [(gptq_pack(w, 4, 32, symmetric=True), gptq_qc, "qweight"), (awq_pack(w, 32), awq_qc, "qweight"),
             (ct_parts, ct_qc, "weight_packed")]  # fmt: skip
    for i, (parts, qc, words) in enumerate(cases):
        folder = tmp_path / str(i)
        write_checkpoint(folder, {NAME + "." + k: v for k, v in parts.items()}, {"model_type": "llama",
                         "quantization_config": qc})  # fmt: skip
        mapped: list[str] = []

        def spy(path, info, dtype, rows, fd):  # noqa: ANN001, ANN202
            mapped.append(info.name)
            return real(path, info, dtype, rows, fd)

        real = reader.map_rows
        with open_checkpoint(folder) as ckpt, patch.object(reader, "map_rows", spy):
            ckpt.tensor(NAME + ".weight")
        assert mapped == [f"{NAME}.{words}"], (qc["quant_method"], mapped)


def test_awq_equals_autoawq_within_float16(tmp_path: Path) -> None:
    w = _weight(64, 96)
    parts = awq_pack(w, 32)
    reference = autoawq_dequantize_gemm(parts["qweight"], parts["qzeros"], parts["scales"], 32).T
    qc = {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True}
    write = {NAME + "." + k: v for k, v in parts.items()}
    whole, blocks, rows, want_rows = _read(tmp_path, write, qc)
    assert torch.equal(whole.half(), reference)  # float32 rounded once to float16 is AutoAWQ's float16 product
    assert torch.equal(blocks, whole) and torch.equal(rows, want_rows)
    assert float((whole - w).abs().max()) <= float(parts["scales"].float().max())


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "zero-points"])
def test_compressed_tensors_int4_equals_the_library(tmp_path: Path, symmetric: bool) -> None:
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    w = _weight(48, 96)
    parts, args = ct_pack(w, "pack-quantized", bits=4, group=32, symmetric=symmetric)
    assert ("weight_zero_point" in parts) is not symmetric
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**args))
    want = BaseCompressor.load_from_registry("pack-quantized").decompress(dict(parts), scheme)["weight"]
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": args}}}  # fmt: skip
    got = _check(tmp_path, {"." + k: v for k, v in parts.items()}, qc, want.float())
    assert float((got - w).abs().max()) < float(parts["weight_scale"].float().max())


def test_compressed_tensors_fp8_channel_equals_the_library(tmp_path: Path) -> None:
    pytest.importorskip("compressed_tensors")
    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    w = _weight(48, 96)
    parts, args = ct_pack(w, "float-quantized")
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**args))
    want = BaseCompressor.load_from_registry("float-quantized").decompress(dict(parts), scheme)["weight"]
    qc = {"quant_method": "compressed-tensors", "format": "float-quantized",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": args}}}  # fmt: skip
    assert parts["weight"].dtype == torch.float8_e4m3fn and parts["weight_scale"].shape == (48, 1)
    _check(tmp_path, {"." + k: v for k, v in parts.items()}, qc, want.float())


@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "nested-absmax"])
def test_bitsandbytes_nf4_equals_its_kernel(tmp_path: Path, nested: bool) -> None:
    w = _weight(48, 72)  # rows of 72 values: row blocks start inside 64-value absmax blocks
    parts = nf4_pack(w, 64, nested=nested)
    absmax = parts[".absmax"]
    if nested:
        state = json.loads(bytes(parts[".quant_state.bitsandbytes__nf4"].tolist()).decode())
        absmax = bnb_dequantize_blockwise(absmax, parts[".nested_absmax"], parts[".nested_quant_map"],
                                          state["nested_blocksize"]) + state["nested_offset"]  # fmt: skip
    want = bnb_dequantize_4bit(parts[""], absmax, parts[".quant_map"], 64, (48, 72))
    qc = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    got = _check(tmp_path, {".weight" + k: v for k, v in parts.items()}, qc, want)
    assert float((got - w).abs().max()) <= 0.16 * float(w.abs().max())  # NF4's widest gap is 0.28 of absmax
    assert not torch.equal(got, bnb_dequantize_4bit(((parts[""] & 0xF) << 4) | (parts[""] >> 4), absmax,
                                                    parts[".quant_map"], 64, (48, 72)))  # fmt: skip  (nibble order)


def test_bitsandbytes_int8_equals_its_kernel(tmp_path: Path) -> None:
    w = _weight(48, 72)
    parts = int8_pack(w)
    want = parts["weight"] * parts["SCB"].view(-1, 1) * 7.874015718698502e-3
    qc = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    got = _check(tmp_path, {"." + k: v for k, v in parts.items()}, qc, want)
    assert float((got - w).abs().max()) <= float(parts["SCB"].max()) / 127


def test_mxfp4_equals_transformers(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    w = _weight(48, 96)
    parts = mxfp4_pack(w)
    # transformers dequantises stacked experts [E, rows, in / 32, 16] to [E, in, rows]: one expert, transposed back.
    want = convert_moe_packed_tensors(parts["weight_blocks"][None], parts["weight_scales"][None], dtype=torch.float32)
    got = _check(tmp_path, {"." + k: v for k, v in parts.items()}, {"quant_method": "mxfp4"}, want[0].T)
    assert float((got - w).abs().max()) <= float(w.abs().max()) / 4  # E2M1: the widest gap is 2 of 6


def test_two_quantised_weights_read_at_once_keep_their_own_values(tmp_path: Path) -> None:
    """The scratch tensors a weight's dequantisation borrows (its chunk buffer, its row-major words, its byte
    indices) are lent to one reader at a time: blocks of two weights taken in turn stay each their own."""
    tensors = {}
    for i in (0, 1):
        parts = gptq_pack(_weight(48, 96, seed=10 + i), 4, 32, symmetric=True)
        tensors |= {f"model.layers.{i}.mlp.up_proj.{k}": v for k, v in parts.items()}
    qc = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "checkpoint_format": "gptq"}
    write_checkpoint(tmp_path, tensors, {"model_type": "llama", "quantization_config": qc})
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in (0, 1)]
    with open_checkpoint(tmp_path) as ckpt, patch.object(registry, "CHUNK_BYTES", 16 * 96 * 4):
        want = [ckpt.tensor(n) for n in names]
        a, b = (ckpt.row_blocks(n, 8 * 96 * 4) for n in names)
        got: list[list[torch.Tensor]] = [[], []]
        for (_, x), (_, y) in zip(a, b):  # one block of each in turn: a chunk of each is live at once
            got[0].append(x.clone())
            got[1].append(y.clone())
    assert all(torch.equal(torch.cat(g), w) for g, w in zip(got, want))
