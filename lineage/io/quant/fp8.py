"""FP8 weights with block scales (`weight` + `weight_scale_inv`): DeepSeek-V3/R1, Qwen3-FP8, transformers'
`FineGrainedFP8Config`.

Formula (llama.cpp `convert_hf_to_gguf.py`, `ModelBase.dequant_model`, `dequant_simple`): each scale covers a
`weight_block_size` block of the weight, `W = w.float() * scale_inv.float()` with the scales repeated over
their blocks and cut to the weight's shape (the last blocks may be partial). Despite its name `weight_scale_inv`
multiplies. A scale tensor of one element is one scale for the whole matrix.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, cell_variances, row_chunks

_FLOAT8 = ("F8_E4M3", "F8_E5M2")
_SCALES = ("F32", "BF16", "F16")


class FP8Block(QuantFormat):
    """`<module>.weight` (float8) scaled by `<module>.weight_scale_inv`, one scale per block."""

    label = "FP8"
    markers = (".weight_scale_inv",)

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        scale_name, name = prefix + marker, prefix + ".weight"
        weight = self.part(stored, name, _FLOAT8, None, scale_name)
        if len(weight.shape) != 2:
            raise self.refuse(stored.path(name), f"tensor '{name}' has shape {list(weight.shape)}: not a matrix; {FIX}")
        out, cols = weight.shape
        block = self.config.weight_block_size if self.config is not None else None
        scale = stored.infos[scale_name]
        if block is None and scale.numel != 1:
            raise self.refuse(
                stored.path(scale_name), f"tensor '{scale_name}' holds {scale.numel} scales but quantization_config "
                "has no weight_block_size; restore config.json",
            )  # fmt: skip
        want = (math.ceil(out / block[0]), math.ceil(cols / block[1])) if block is not None else None
        if want is not None and tuple(scale.shape) != want:
            raise self.refuse(
                stored.path(scale_name), f"tensor '{scale_name}' has shape {list(scale.shape)}, but weight_block_size "
                f"{list(block)} of a {out} x {cols} weight needs {list(want)}: the scales or quantization_config "
                f"are wrong; {FIX}",
            )  # fmt: skip
        self.part(stored, scale_name, _SCALES, None, scale_name)
        return QuantWeight(name, (out, cols), f"FP8-{weight.dtype[3:]}", {"weight": name, "scale": scale_name},
                           {"block": block})  # fmt: skip

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        scale = self.finite(stored, weight.parts["scale"], parts["scale"]).float()
        return parts["weight"], scale

    def state_noise(self, weight: QuantWeight, state: Any) -> torch.Tensor:
        values, scale = state
        cells = float8_cells(values.dtype)
        block = weight.extra["block"]
        rows, cols = weight.shape

        def per_rows(lo: int, hi: int) -> torch.Tensor:
            var = cells.index_select(0, values[lo:hi].view(torch.uint8).reshape(-1).long()).view(hi - lo, cols)
            if block is None:
                return var.sum(1) * float(scale.reshape(())) ** 2
            per_block = torch.nn.functional.pad(var, (0, -cols % block[1])).view(hi - lo, -1, block[1]).sum(-1)
            s = scale.double().index_select(0, torch.arange(lo, hi) // block[0])
            return (per_block * s.square()).sum(1)

        return row_chunks(rows, cols, per_rows)

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        values, scale = state
        block = weight.extra["block"]
        if block is None:
            return values[lo:hi].float() * scale.reshape(())
        rows = scale.index_select(0, torch.arange(lo, hi) // block[0])  # each logical row's row of scales
        return values[lo:hi].float() * rows.repeat_interleave(block[1], dim=1)[:, : weight.shape[1]]


def float8_cells(dtype: torch.dtype) -> torch.Tensor:
    """`cell_variances` of the 256 values of a float8 dtype, by byte (float64 [256])."""
    return cell_variances(torch.arange(256, dtype=torch.uint8).view(dtype).double())
