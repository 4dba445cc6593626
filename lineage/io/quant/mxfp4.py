"""MXFP4 (OCP microscaling FP4, gpt-oss's `*_blocks` / `*_scales`): a dense matrix or gpt-oss's stacked experts.

Dense: `<module>.weight_blocks` uint8 [out, in / 32, 16] and `<module>.weight_scales` uint8 [out, in / 32] make
`<module>.weight` [out, in]. Stacked experts (gpt-oss): `mlp.experts.gate_up_proj_blocks` uint8 [E, out, in / 32,
16] and `..._scales` [E, out, in / 32] make `mlp.experts.gate_up_proj` [E, in, out], the layout of the bf16
checkpoint (each expert's matrix stored `[in, out]`, gate and up rows interleaved along `out`: the architecture's
views undo both, as for the bf16 file). An expert is dequantised alone, from its own bytes: the stack is never
read whole.

Formula (transformers `integrations/mxfp4.py`, `convert_moe_packed_tensors`): each block holds 32 E2M1 values
two a byte, the LOW nibble the even one; a value is `FP4_VALUES[nibble]` (0, .5, 1, 1.5, 2, 3, 4, 6 and their
negatives) times `2 ** (scale - 127)` (an E8M0 exponent per block), by `torch.ldexp`; stacked experts are then
transposed to [E, in, out], as the converter does.
"""

from __future__ import annotations

from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, cell_variances, row_chunks

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


class MXFP4(QuantFormat):
    """An MXFP4 matrix (`<module>.weight_blocks`, `.weight_scales`) or stack of experts (`<name>_blocks`, `_scales`)."""

    label = "MXFP4"
    markers = ("_blocks",)

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        blocks, scales = prefix + marker, prefix + "_scales"
        info = self.part(stored, blocks, ("U8",), None, blocks)
        stacked = not prefix.endswith(".weight")
        want = "[experts, out, in / 32, 16]" if stacked else "[out, in / 32, 16]"
        if len(info.shape) != (4 if stacked else 3) or info.shape[-1] != 16:
            raise self.refuse(stored.path(blocks), f"tensor '{blocks}' has shape {list(info.shape)}, not {want}; {FIX}")
        self.part(stored, scales, ("U8",), tuple(info.shape[:-1]), blocks)
        *lead, out, groups = info.shape[:-1]
        shape = (lead[0], groups * 32, out) if stacked else (out, groups * 32)
        return QuantWeight(prefix, shape, "MXFP4", {"blocks": blocks, "scales": scales}, {"stacked": stacked})

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        exponents = parts["scales"].to(torch.int32) - 127
        if bool((parts["scales"] == 255).any()):  # E8M0's NaN
            raise self.refuse(stored.path(weight.parts["scales"]), f"tensor '{weight.parts['scales']}' holds NaN "
                              f"scales (255); {FIX}")  # fmt: skip
        return parts["blocks"], exponents.unsqueeze(-1), torch.tensor(FP4_VALUES)

    def state_noise(self, weight: QuantWeight, state: Any) -> torch.Tensor:
        blocks, exponents, lut = state
        cells = cell_variances(lut)

        def noise(raw: torch.Tensor, exps: torch.Tensor) -> torch.Tensor:  # [out, groups, 16] -> [out]
            def per_rows(lo: int, hi: int) -> torch.Tensor:
                var = cells.index_select(0, _nibbles(raw[lo:hi]).reshape(-1).long())
                scale2 = torch.exp2(2 * exps[lo:hi].squeeze(-1).double())  # exact: powers of two
                return (var.view(hi - lo, -1, 32).sum(-1) * scale2).sum(1)

            return row_chunks(raw.shape[0], raw.shape[1] * 32, per_rows)

        if weight.extra["stacked"]:  # per expert, per output (the rows its views read)
            return torch.stack([noise(blocks[e], exponents[e]) for e in range(blocks.shape[0])])
        return noise(blocks, exponents)

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        blocks, exponents, lut = state
        raw = blocks[lo:hi]
        values = lut.index_select(0, _nibbles(raw).reshape(-1).long()).view(*raw.shape[:-1], 32)
        values = torch.ldexp(values, exponents[lo:hi]).flatten(-2)
        return values.transpose(1, 2).contiguous() if weight.extra["stacked"] else values


def _nibbles(raw: torch.Tensor) -> torch.Tensor:
    """Bytes [..., 16] -> their 32 nibbles [..., 32], the low nibble of each byte first."""
    return torch.stack((raw & 0x0F, raw >> 4), dim=-1).flatten(-2)
