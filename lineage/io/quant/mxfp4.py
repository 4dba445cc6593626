"""MXFP4 (OCP microscaling FP4, gpt-oss's `*_blocks` / `*_scales`), in its dense layout: `<module>.weight_blocks`
uint8 [out, in / 32, 16] and `<module>.weight_scales` uint8 [out, in / 32] make `<module>.weight` [out, in].

Formula (transformers `integrations/mxfp4.py`, `convert_moe_packed_tensors`): each block holds 32 E2M1 values
two a byte, the LOW nibble the even one; a value is `FP4_VALUES[nibble]` (0, .5, 1, 1.5, 2, 3, 4, 6 and their
negatives) times `2 ** (scale - 127)` (an E8M0 exponent per block), by `torch.ldexp`. gpt-oss stores its experts
as 3-D `mlp.experts.*_blocks` (gate and up interleaved along the outputs); those need the mixture-of-experts
layouts lineage does not resolve yet, and are refused by name.
"""

from __future__ import annotations

from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


class MXFP4(QuantFormat):
    """An MXFP4 matrix: `<module>.weight_blocks` and `<module>.weight_scales`."""

    label = "MXFP4"
    markers = ("_blocks",)

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        blocks, scales = prefix + marker, prefix + "_scales"
        info = self.part(stored, blocks, ("U8",), None, blocks)
        if not prefix.endswith(".weight"):
            raise self.refuse(stored.path(blocks), f"tensor '{blocks}' is a stacked expert tensor: MXFP4 experts "
                              "(gpt-oss) need mixture-of-experts layouts, which lineage does not read yet")  # fmt: skip
        if len(info.shape) != 3 or info.shape[2] != 16:
            raise self.refuse(stored.path(blocks), f"tensor '{blocks}' has shape {list(info.shape)}, not [out, "
                              f"in / 32, 16]; {FIX}")  # fmt: skip
        out, groups = info.shape[0], info.shape[1]
        self.part(stored, scales, ("U8",), (out, groups), blocks)
        return QuantWeight(prefix, (out, groups * 32), "MXFP4", {"blocks": blocks, "scales": scales})

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        exponents = parts["scales"].to(torch.int32) - 127
        if bool((parts["scales"] == 255).any()):  # E8M0's NaN
            raise self.refuse(stored.path(weight.parts["scales"]), f"tensor '{weight.parts['scales']}' holds NaN "
                              f"scales (255); {FIX}")  # fmt: skip
        return parts["blocks"], exponents.unsqueeze(-1), torch.tensor(FP4_VALUES)

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        blocks, exponents, lut = state
        raw = blocks[lo:hi]
        index = torch.stack((raw & 0x0F, raw >> 4), dim=-1).view(hi - lo, -1).long()  # low nibble first
        values = lut.index_select(0, index.view(-1)).view(hi - lo, -1, 32)
        return torch.ldexp(values, exponents[lo:hi]).view(hi - lo, -1)
