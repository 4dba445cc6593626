"""bitsandbytes: 4-bit NF4/FP4 (with or without nested absmax) and 8-bit LLM.int8 (`SCB`) checkpoints.

Layout and formula (bitsandbytes `functional.py`: `QuantState.as_dict(packed=True)`, `dequantize_4bit`,
`dequantize_blockwise`, `int8_vectorwise_dequant`; their pure-torch CPU kernels in `backends/default/ops.py`):

* 4-bit: `weight` uint8 holds the row-major [out, in] values two a byte, the first in the HIGH nibble; each
  value indexes `weight.quant_map` (16 floats: the NF4 or FP4 codebook) and is multiplied by the absmax of its
  block of `blocksize` values. `weight.quant_state.bitsandbytes__<nf4|fp4>` is a uint8 tensor holding JSON
  (`quant_type`, `blocksize`, `shape`, and when nested `nested_blocksize`, `nested_offset`). Nested (double)
  quantisation stores `weight.absmax` as uint8 codes into `weight.nested_quant_map` (256 floats), scaled by
  `weight.nested_absmax` per block of `nested_blocksize`, plus `nested_offset`.
* 8-bit: `weight` int8 [out, in] and `SCB` float32 [out]: `W = weight * SCB[:, None] * (1 / 127)`.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, cell_variances, row_chunks

_STATE = ".weight.quant_state.bitsandbytes__"
_INV_127 = 7.874015718698502e-3  # bitsandbytes' own constant for 1/127


class BitsAndBytes(QuantFormat):
    """A bitsandbytes layer: 4-bit with its packed quant state, or int8 with `SCB`."""

    label = "bitsandbytes"
    markers = (_STATE + "nf4", _STATE + "fp4", ".SCB")

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        name = prefix + ".weight"
        if marker == ".SCB":
            info = self.part(stored, name, ("I8",), None, prefix + marker)
            if len(info.shape) != 2:
                raise self.refuse(stored.path(name), f"tensor '{name}' is not a matrix; {FIX}")
            self.part(stored, prefix + marker, ("F32", "F16", "BF16"), (info.shape[0],), name)
            return QuantWeight(name, tuple(info.shape), "bnb-int8", {"weight": name, "scb": prefix + marker})
        state_name = prefix + marker
        quant = marker.rsplit("__", 1)[1]
        state = self._state(stored, state_name)
        if state.get("quant_type") != quant:
            raise self.refuse(stored.path(state_name), f"tensor '{state_name}' says quant_type "
                              f"{state.get('quant_type')!r}; {FIX}")  # fmt: skip
        wanted = self.config.bnb_quant_type if self.config is not None else None
        if wanted is not None and wanted != quant:
            raise self.refuse(self.config_path, f"quantization_config says bnb_4bit_quant_type '{wanted}', but "
                              f"'{state_name}' is {quant}: the config contradicts the tensors")  # fmt: skip
        shape, size = state.get("shape"), state.get("blocksize")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)
                and isinstance(size, int) and size > 0):  # fmt: skip
            raise self.refuse(stored.path(state_name), f"tensor '{state_name}' has no valid shape and blocksize; {FIX}")
        n = shape[0] * shape[1]
        blocks = -(-n // size)
        parts = {"weight": name, "absmax": name + ".absmax", "code": name + ".quant_map"}
        self.part(stored, name, ("U8",), None, state_name)
        if stored.infos[name].numel != -(-n // 2):
            raise self.refuse(stored.path(name), f"tensor '{name}' holds {stored.infos[name].numel} bytes, but "
                              f"its quant state's shape {shape} needs {-(-n // 2)}; {FIX}")  # fmt: skip
        self.part(stored, parts["code"], ("F32",), (16,), state_name)
        nested = "nested_offset" in state
        self.part(stored, parts["absmax"], ("U8",) if nested else ("F32",), (blocks,), state_name)
        extra = {"size": size, "n": n}
        if nested:
            inner = state.get("nested_blocksize")
            if not isinstance(inner, int) or inner <= 0 or not isinstance(state["nested_offset"], (int, float)):
                raise self.refuse(stored.path(state_name), f"tensor '{state_name}' has no valid nested_blocksize "
                                  f"and nested_offset; {FIX}")  # fmt: skip
            parts |= {"nested_absmax": name + ".nested_absmax", "nested_code": name + ".nested_quant_map"}
            self.part(stored, parts["nested_absmax"], ("F32",), (-(-blocks // inner),), state_name)
            self.part(stored, parts["nested_code"], ("F32",), (256,), state_name)
            extra |= {"inner": inner, "offset": float(state["nested_offset"])}
        return QuantWeight(name, (shape[0], shape[1]), f"bnb-{quant}", parts, extra, (state_name,))

    def _state(self, stored: Stored, name: str) -> dict[str, Any]:
        self.part(stored, name, ("U8",), None, name)
        try:
            state = json.loads(bytes(stored.read(name).numpy()).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self.refuse(stored.path(name), f"tensor '{name}' does not hold a JSON quant state; {FIX}") from None
        if not isinstance(state, dict):
            raise self.refuse(stored.path(name), f"tensor '{name}' does not hold a JSON object; {FIX}")
        return state

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        if "scb" in weight.parts:
            return parts["weight"], self.finite(stored, weight.parts["scb"], parts["scb"]).float()
        code = self.finite(stored, weight.parts["code"], parts["code"])
        absmax = parts["absmax"]
        if "nested_absmax" in weight.parts:
            inner = self.finite(stored, weight.parts["nested_absmax"], parts["nested_absmax"])
            nested_code = self.finite(stored, weight.parts["nested_code"], parts["nested_code"])
            values = nested_code.index_select(0, absmax.long())
            per_block = inner.repeat_interleave(weight.extra["inner"])[: values.numel()]
            absmax = values * per_block + weight.extra["offset"]
        absmax = self.finite(stored, weight.parts["absmax"], absmax)
        return parts["weight"].reshape(-1), code, absmax

    def state_noise(self, weight: QuantWeight, state: Any) -> torch.Tensor:
        rows, cols = weight.shape
        if "scb" in weight.parts:  # int8: one step of SCB / 127 a value
            return (state[1].double() * _INV_127).square() * cols / 12
        packed, code, absmax = state
        cells, size = cell_variances(code), weight.extra["size"]

        def per_rows(lo: int, hi: int) -> torch.Tensor:
            first, last = lo * cols, hi * cols
            raw = packed[first // 2 : -(-last // 2)]
            idx = torch.stack((raw >> 4, raw & 0xF), dim=1).reshape(-1)[first % 2 :][: last - first]
            scale = absmax.double().index_select(0, torch.arange(first, last) // size)
            return (cells.index_select(0, idx.long()) * scale.square()).view(hi - lo, cols).sum(1)

        return row_chunks(rows, cols, per_rows)

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        if "scb" in weight.parts:
            values, scb = state
            return values[lo:hi] * scb[lo:hi].view(-1, 1) * _INV_127
        packed, code, absmax = state
        cols, size = weight.shape[1], weight.extra["size"]
        first, last = lo * cols, hi * cols  # the values of rows lo .. hi-1, in storage order
        raw = packed[first // 2 : -(-last // 2)]
        idx = torch.stack((raw >> 4, raw & 0xF), dim=1).reshape(-1)[first % 2 :][: last - first]
        values = code.index_select(0, idx.long())  # index_select: plain indexing is far slower on CPU
        if first % size == 0 and (last - first) % size == 0:
            return (values.view(-1, size) * absmax[first // size : last // size, None]).view(hi - lo, cols)
        return (values * absmax.index_select(0, torch.arange(first, last) // size)).view(hi - lo, cols)
