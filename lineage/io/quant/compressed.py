"""compressed-tensors (llm-compressor's output): `pack-quantized` integers and `float-/int-/naive-quantized`.

Layout and formula (the `compressed-tensors` package, `PackedQuantizationCompressor.decompress`,
`unpack_from_int32` and `quantization.lifecycle.forward._dequantize`; llama.cpp's `dequant_packed` reads the
same): `weight_packed` int32 [out, in * bits / 32] packs consecutive inputs lowest bits first, each value stored
plus 2^(bits-1); `weight_shape` holds the logical [out, in]; `weight_scale` [out, groups] (one column per
channel); an asymmetric scheme adds `weight_zero_point` packed along the outputs. `float-quantized` (FP8) and
`int-/naive-quantized` (int8) keep `weight` as it is with `weight_scale`. The value is `(q - zero) * scale`
computed in the scale's dtype, as the package computes it, then made float32: equal bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, groups_of, row_chunks
from lineage.io.quant.fp8 import float8_cells
from lineage.io.quant.gptq import unpack_rows

_SCALES = ("F16", "BF16", "F32")
_PACKED = "pack-quantized"
_PLAIN = ("float-quantized", "int-quantized", "naive-quantized")


class CompressedTensors(QuantFormat):
    """A compressed-tensors layer, of the config's one config group."""

    label = "compressed-tensors"
    markers = (".weight_packed", ".weight_scale")
    mapped = ("packed", "weight")  # only read, a block of rows at a time: no copy out of the page cache

    def prefixes(self, names: set[str]) -> list[tuple[str, str]]:
        marker = ".weight_packed" if self.config.format == _PACKED else ".weight_scale"
        return sorted((n[: -len(marker)], marker) for n in names if n.endswith(marker))

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        qc, args = self.config, self.config.weights
        if qc.groups != 1:
            raise self.refuse(self.config_path, f"{qc.groups} config_groups are not supported (lineage reads one)")
        if qc.format not in (_PACKED, *_PLAIN):
            raise self.refuse(self.config_path, f"format '{qc.format}' is not supported (lineage reads "
                              f"{', '.join((_PACKED, *_PLAIN))})")  # fmt: skip
        strategy, bits = args.get("strategy"), args.get("num_bits")
        if strategy not in ("group", "channel", "tensor"):
            raise self.refuse(self.config_path, f"weight strategy '{strategy}' is not supported (lineage reads "
                              "group, channel and tensor)")  # fmt: skip
        name, scale = prefix + ".weight", prefix + ".weight_scale"
        if prefix + ".weight_g_idx" in stored.infos:  # activation order: groups are not consecutive inputs
            raise self.refuse(stored.path(prefix + ".weight_g_idx"), f"tensor '{prefix}.weight_g_idx': activation "
                              "ordering (actorder) is not supported (lineage reads groups of consecutive inputs)")
        parts = {"scale": scale}
        if qc.format == _PACKED:
            if args.get("type", "int") != "int" or bits not in (2, 4, 8):
                raise self.refuse(self.config_path, f"{bits}-bit {args.get('type')} packing is not supported "
                                  "(lineage reads 2-, 4- and 8-bit integers)")  # fmt: skip
            packed, shape_name = prefix + ".weight_packed", prefix + ".weight_shape"
            info = self.part(stored, packed, ("I32",), None, packed)
            self.part(stored, shape_name, ("I64", "I32"), (2,), packed)
            out, cols = (int(v) for v in stored.read(shape_name))
            if len(info.shape) != 2 or tuple(info.shape) != (out, -(-cols * bits // 32)):
                raise self.refuse(stored.path(packed), f"tensor '{packed}' has shape {list(info.shape)}, but "
                                  f"'{shape_name}' says [{out}, {cols}] of {bits}-bit values; {FIX}")  # fmt: skip
            parts |= {"packed": packed}
        else:
            info = self.part(stored, name, ("F8_E4M3", "F8_E5M2", "I8"), None, scale)
            if len(info.shape) != 2:
                raise self.refuse(stored.path(name), f"tensor '{name}' is not a matrix; {FIX}")
            out, cols = info.shape
            parts |= {"weight": name}
        size = args.get("group_size") if strategy == "group" else None
        groups = groups_of(cols, size)
        if size is not None and cols % size:
            raise self.refuse(stored.path(scale), f"{cols} inputs are not whole groups of {size}; {FIX}")
        self.part(stored, scale, _SCALES, (out, groups) if strategy != "tensor" else None, next(iter(parts.values())))
        if strategy == "tensor" and stored.infos[scale].numel != 1:
            raise self.refuse(stored.path(scale), f"tensor '{scale}' holds {stored.infos[scale].numel} scales for "
                              "the 'tensor' strategy of quantization_config; the config contradicts the tensors")
        zero = prefix + ".weight_zero_point"
        if zero in stored.infos and not args.get("symmetric", True):
            parts["zero"] = zero
            zshape = (-(-out * bits // 32), groups) if qc.format == _PACKED else (out, groups)
            self.part(stored, zero, ("I32",) if qc.format == _PACKED else ("I8", "I32", *_SCALES), zshape, zero)
        kind = f"CT-int{bits}" if qc.format == _PACKED else f"CT-{info.dtype}"
        hidden = (prefix + ".weight_shape",) if qc.format == _PACKED else ()
        return QuantWeight(name, (out, cols), kind, parts, {"bits": bits, "groups": groups}, hidden)

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        scale = self.finite(stored, weight.parts["scale"], parts["scale"])
        zero = parts.get("zero")
        if zero is not None and "packed" in weight.parts:
            bits = weight.extra["bits"]
            zero = unpack_rows(zero, bits)[: weight.shape[0]] - (1 << (bits - 1))
        if zero is not None:
            zero = zero.to(scale.dtype)
        values = parts.get("packed", parts.get("weight"))
        return values, scale.reshape(-1, 1) if scale.numel() == 1 else scale, zero

    def state_noise(self, weight: QuantWeight, state: Any) -> torch.Tensor:
        values, scale, _ = state
        rows, cols = weight.shape
        groups = weight.extra["groups"]
        s2 = scale.double().square().expand(rows, groups) if scale.shape[0] == 1 else scale.double().square()
        if "packed" in weight.parts or values.dtype == torch.int8:  # integers: one scale step a value
            return s2.sum(1) * (cols // groups) / 12
        cells = float8_cells(values.dtype)

        def per_rows(lo: int, hi: int) -> torch.Tensor:
            var = cells.index_select(0, values[lo:hi].view(torch.uint8).reshape(-1).long())
            return (var.view(hi - lo, groups, -1).sum(-1) * s2[lo:hi]).sum(1)

        return row_chunks(rows, cols, per_rows)

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        values, scale, zero = state
        if "packed" in weight.parts:
            bits = weight.extra["bits"]
            q = unpack_rows(values[lo:hi].T, bits).T[:, : weight.shape[1]] - (1 << (bits - 1))
        else:
            q = values[lo:hi]
        n, groups = hi - lo, weight.extra["groups"]
        x = q.to(scale.dtype).view(n, groups, -1)
        if zero is not None:
            x = x - zero[lo:hi].unsqueeze(-1)
        s = scale if scale.shape[0] == 1 else scale[lo:hi]
        return (x * s.unsqueeze(-1)).view(n, -1).float()
