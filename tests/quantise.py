"""Reference packers of the quantised formats, written from their primary sources, for the tests' fixtures.

Each packer quantises a float [out, in] weight as the format's own tool does and stores it as that tool stores
it: GPTQ as AutoGPTQ/GPTQModel's `pack` (inputs packed into int32 rows lowest bits first, zero points minus one
in the v1 format), AWQ as AutoAWQ's `WQLinear_GEMM.from_linear` (outputs packed in the order 0,2,4,6,1,3,5,7),
FP8 blocks as DeepSeek-V3's `weight_scale_inv`, bitsandbytes as `QuantState.as_dict(packed=True)` (high nibble
first, JSON quant state), MXFP4 as gpt-oss's blocks and E8M0 scales. compressed-tensors is packed by the
`compressed-tensors` package itself where its values are pinned (its int4 packing is also written here, from
its `pack_to_int32`: the package packs a whole model too slowly for the default run).
`quantised_folder` writes a tiny model with every linear layer of its decoder quantised in one format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests.checkpoints import write_checkpoint

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
NF4 = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023,
       1.0)  # fmt: skip  (bitsandbytes get_4bit_type("nf4"))


def _words(values: np.ndarray, bits: int, axis: int) -> torch.Tensor:
    """Pack non-negative ints along `axis`, 32 / bits a word, the first in the lowest bits (uint32 -> int32)."""
    v = np.moveaxis(values.astype(np.uint32), axis, 0)
    k = 32 // bits
    v = v.reshape(v.shape[0] // k, k, *v.shape[1:])
    words = np.zeros((v.shape[0], *v.shape[2:]), dtype=np.uint32)
    for j in range(k):
        words |= v[:, j] << np.uint32(bits * j)
    return torch.from_numpy(np.moveaxis(words, 0, axis).view(np.int32).copy())


def _asymmetric(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (min, max) scale (fp16) and integer zero point of `w` [rows, group]."""
    maxq = (1 << bits) - 1
    lo, hi = w.min(dim=1).values.clamp(max=0), w.max(dim=1).values.clamp(min=0)
    scale = ((hi - lo) / maxq).clamp(min=1e-8).half()
    zero = torch.round(-lo / scale.float()).clamp(0, maxq)
    return scale, zero


def gptq_pack(w: torch.Tensor, bits: int, group: int, *, act_order: bool = False, v2: bool = False,
              seed: int = 0, symmetric: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """`qweight`, `qzeros`, `scales`, `g_idx` of `w` [out, in] (act-order: groups over a permuted input order;
    symmetric: every zero point the middle of the range, AutoGPTQ's `sym=True`)."""
    out, cols = w.shape
    maxq = (1 << bits) - 1
    order = torch.randperm(cols, generator=torch.Generator().manual_seed(seed)) if act_order else torch.arange(cols)
    g_idx = torch.empty(cols, dtype=torch.int32)
    g_idx[order] = (torch.arange(cols) // group).int()
    groups = -(-cols // group)
    scales = torch.empty(groups, out, dtype=torch.float16)
    zeros = torch.empty(groups, out)
    for g in range(groups):
        block = w.index_select(1, order[g * group : (g + 1) * group])
        if symmetric:
            s = (block.abs().amax(1) * 2 / maxq).clamp(min=1e-8).half()
            z = torch.full((out,), float((maxq + 1) // 2))
        else:
            s, z = _asymmetric(block, bits)
        scales[g], zeros[g] = s, z.clamp(min=0 if v2 else 1)  # v1 stores zero - 1: a zero of 0 cannot be stored
    g = g_idx.long()  # index_select: plain tensor indexing is slow on CPU
    q = torch.round(w.T / scales.float().index_select(0, g) + zeros.index_select(0, g)).clamp(0, maxq)  # [in, out]
    stored_zeros = zeros if v2 else zeros - 1
    return {"qweight": _words(q.numpy(), bits, 0), "qzeros": _words(stored_zeros.numpy(), bits, 1),
            "scales": scales, "g_idx": g_idx}  # fmt: skip


def awq_pack(w: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    """AWQ GEMM `qweight`, `qzeros`, `scales` of `w` [out, in], 4 bits."""
    out, cols = w.shape
    groups = cols // group
    wt = w.T.reshape(groups, group, out)
    scales = torch.empty(groups, out, dtype=torch.float16)
    zeros = torch.empty(groups, out)
    for g in range(groups):
        s, z = _asymmetric(wt[g].T, 4)
        scales[g], zeros[g] = s, z
    q = torch.round(wt / scales.float().unsqueeze(1) + zeros.unsqueeze(1)).clamp(0, 15).reshape(cols, out)

    order = torch.tensor([c * 8 + AWQ_ORDER[i] for c in range(out // 8) for i in range(8)])

    def pack(v: torch.Tensor) -> torch.Tensor:  # word c, nibble i holds output c * 8 + AWQ_ORDER[i]
        return _words(v[:, order].numpy(), 4, 1)

    return {"qweight": pack(q), "qzeros": pack(zeros), "scales": scales}


def fp8_block_pack(w: torch.Tensor, block: tuple[int, int]) -> dict[str, torch.Tensor]:
    """float8 e4m3 `weight` and float32 `weight_scale_inv` per block (absmax / 448, DeepSeek-V3's recipe)."""
    out, cols = w.shape
    rb, cb = -(-out // block[0]), -(-cols // block[1])
    scale = torch.empty(rb, cb)
    for i in range(rb):
        for j in range(cb):
            tile = w[i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]]
            scale[i, j] = tile.abs().max().clamp(min=1e-12) / 448.0
    full = scale.repeat_interleave(block[0], 0)[:out].repeat_interleave(block[1], 1)[:, :cols]
    return {"weight": (w / full).to(torch.float8_e4m3fn), "weight_scale_inv": scale}


def nf4_pack(w: torch.Tensor, blocksize: int = 64, *, nested: bool = False) -> dict[str, torch.Tensor]:
    """bitsandbytes 4-bit NF4 tensors of `w` as `QuantState.as_dict(packed=True)` names them."""
    flat = w.reshape(-1, blocksize)
    absmax = flat.abs().max(dim=1).values
    code = torch.tensor(NF4)
    idx = (flat / absmax[:, None]).unsqueeze(-1).sub(code).abs().argmin(-1).reshape(-1).to(torch.uint8)
    packed = (idx[0::2] << 4 | idx[1::2]).unsqueeze(1)  # the first value in the high nibble
    state = {"quant_type": "nf4", "blocksize": blocksize, "dtype": "bfloat16", "shape": list(w.shape)}
    out = {"": packed, ".quant_map": code}
    if nested:
        offset = float(absmax.mean())
        dynamic = torch.linspace(-1, 1, 256)  # any 256-entry code: the reader takes the stored one
        inner = 256
        centred = (absmax - offset).reshape(-1)
        blocks = -(-centred.numel() // inner)
        padded = torch.nn.functional.pad(centred, (0, blocks * inner - centred.numel())).reshape(blocks, inner)
        nested_absmax = padded.abs().max(dim=1).values
        q = (padded / nested_absmax[:, None]).unsqueeze(-1).sub(dynamic).abs().argmin(-1).reshape(-1)
        out |= {".absmax": q[: centred.numel()].to(torch.uint8), ".nested_absmax": nested_absmax,
                ".nested_quant_map": dynamic}  # fmt: skip
        state |= {"nested_blocksize": inner, "nested_dtype": "float32", "nested_offset": offset}
    else:
        out[".absmax"] = absmax
    out[".quant_state.bitsandbytes__nf4"] = torch.tensor(list(json.dumps(state).encode()), dtype=torch.uint8)
    return out


def int8_pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """bitsandbytes LLM.int8 `weight` (int8) and `SCB` (row absmax)."""
    scb = w.abs().max(dim=1).values
    return {"weight": torch.round(w * 127 / scb[:, None]).to(torch.int8), "SCB": scb}


def ct_pack(w: torch.Tensor, fmt: str, *, bits: int = 4, group: int = 32, symmetric: bool = True):  # noqa: ANN201
    """compressed-tensors' own compressor applied to `w`: (tensors, the weights' args dict)."""
    from compressed_tensors.compressors.base import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    if fmt == "pack-quantized":
        args = QuantizationArgs(num_bits=bits, type="int", symmetric=symmetric, strategy="group", group_size=group)
        lo = w.reshape(w.shape[0], -1, group).amin(-1).clamp(max=0)
        hi = w.reshape(w.shape[0], -1, group).amax(-1).clamp(min=0)
    else:
        args = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="channel")
        lo, hi = w.amin(1, keepdim=True).clamp(max=0), w.amax(1, keepdim=True).clamp(min=0)
    from compressed_tensors.quantization.utils import calculate_qparams

    scale, zero = calculate_qparams(lo, hi, args)
    state = {"weight": w.to(torch.bfloat16), "weight_scale": scale.to(torch.bfloat16), "weight_zero_point": zero}
    compressed = BaseCompressor.load_from_registry(fmt).compress(state, QuantizationScheme(targets=["Linear"],
                                                                                           weights=args))
    return dict(compressed), args.model_dump(mode="json")


def ct_int4_pack(w: torch.Tensor, group: int) -> tuple[dict[str, torch.Tensor], dict]:
    """compressed-tensors' symmetric int4 group packing, written from its `pack_to_int32` (value + 8, eight a
    word along the inputs, lowest bits first): the library's own packer is too slow for a whole model here."""
    out, cols = w.shape
    scale = (w.reshape(out, -1, group).abs().amax(-1) / 7.5).clamp(min=1e-8).to(torch.bfloat16)
    full = scale.float().repeat_interleave(group, 1)
    q = torch.round(w / full).clamp(-8, 7) + 8
    args = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group}
    return {".weight_packed": _words(q.numpy(), 4, 1), ".weight_scale": scale,
            ".weight_shape": torch.tensor([out, cols])}, args  # fmt: skip


def mxfp4_pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """MXFP4 `weight_blocks` [out, in / 32, 16] and `weight_scales` [out, in / 32] (E8M0 = exponent + 127): each
    block of 32 scaled by the power of two that brings its absmax under 6, values rounded to the nearest E2M1,
    two a byte with the even value in the low nibble (transformers' `convert_moe_packed_tensors` reads them so)."""
    out, cols = w.shape
    blocks = w.reshape(out, cols // 32, 32)
    exponent = torch.ceil(torch.log2(blocks.abs().amax(-1).clamp(min=1e-30) / 6.0)).clamp(-127, 127)
    table = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
    scaled = blocks / torch.exp2(exponent).unsqueeze(-1)
    idx = (scaled.unsqueeze(-1) - table).abs().argmin(-1).to(torch.uint8)  # [out, groups, 32]
    packed = idx[..., 0::2] | (idx[..., 1::2] << 4)
    return {"weight_blocks": packed.contiguous(), "weight_scales": (exponent + 127).to(torch.uint8)}


def _config_for(fmt: str, args: dict | None = None, group: int = 32) -> dict:
    return {
        "gptq": {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": True, "sym": False,
                 "checkpoint_format": "gptq"},
        "gptq8": {"quant_method": "gptq", "bits": 8, "group_size": group, "desc_act": False, "sym": False,
                  "checkpoint_format": "gptq_v2"},
        "gptq2": {"quant_method": "gptq", "bits": 2, "group_size": group, "desc_act": False, "sym": False,
                  "checkpoint_format": "gptq"},
        "awq": {"quant_method": "awq", "bits": 4, "group_size": group, "version": "gemm", "zero_point": True},
        "fp8": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [group, group]},
        "nf4": {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True},
        "int8": {"quant_method": "bitsandbytes", "load_in_8bit": True},
        "mxfp4": {"quant_method": "mxfp4", "modules_to_not_convert": ["lm_head", "embed_tokens"]},
        "ct-int4": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                    "config_groups": {"group_0": {"targets": ["Linear"], "weights": args}}, "ignore": ["lm_head"]},
        "ct-fp8": {"quant_method": "compressed-tensors", "format": "float-quantized",
                   "config_groups": {"group_0": {"targets": ["Linear"], "weights": args}}, "ignore": ["lm_head"]},
    }[fmt]  # fmt: skip


FORMATS = ("fp8", "gptq", "gptq8", "gptq2", "awq", "ct-int4", "ct-fp8", "nf4", "int8", "mxfp4")


def quantise_layer(w: torch.Tensor, fmt: str, group: int = 32) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The stored tensors of one quantised layer (names relative to the module: `.qweight`...), and CT's args;
    `group` inputs a scale (GPTQ, AWQ, compressed-tensors), `group` x `group` blocks for FP8."""
    if fmt.startswith("gptq"):
        bits = {"gptq": 4, "gptq8": 8, "gptq2": 2}[fmt]
        parts = gptq_pack(w, bits, group, act_order=fmt == "gptq", v2=fmt == "gptq8")
        return {"." + k: v for k, v in parts.items()}, None
    if fmt == "awq":
        return {"." + k: v for k, v in awq_pack(w, group).items()}, None
    if fmt == "fp8":
        return {"." + k: v for k, v in fp8_block_pack(w, (group, group)).items()}, None
    if fmt == "nf4":
        return {".weight" + k: v for k, v in nf4_pack(w, 64, nested=True).items()}, None
    if fmt == "int8":
        return {"." + k: v for k, v in int8_pack(w).items()}, None
    if fmt == "mxfp4":
        return {"." + k: v for k, v in mxfp4_pack(w).items()}, None
    if fmt == "ct-int4":
        return ct_int4_pack(w, group)
    parts, args = ct_pack(w, "float-quantized")
    return {"." + k: v for k, v in parts.items()}, args


def quantised_folder(folder: Path, tensors: dict[str, torch.Tensor], config: dict, fmt: str, group: int = 32) -> Path:
    """Write `tensors` (a Llama state dict) with every decoder linear layer quantised in `fmt`."""
    out: dict[str, torch.Tensor] = {}
    args = None
    for name, value in tensors.items():
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module.rsplit(".", 1)[-1] in LINEAR:
            parts, args = quantise_layer(value.float(), fmt, group)
            out |= {module + k: v for k, v in parts.items()}
        else:
            out[name] = value.to(torch.bfloat16)
    return write_checkpoint(folder, out, {**config, "quantization_config": _config_for(fmt, args, group)})
