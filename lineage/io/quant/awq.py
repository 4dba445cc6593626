"""AWQ, GEMM packing (`qweight`, `qzeros`, `scales`): AutoAWQ and llm-awq checkpoints, 4 bits.

Layout and formula (AutoAWQ `awq/utils/packing_utils.py`, `unpack_awq`, `reverse_awq_order`,
`dequantize_gemm`): unlike GPTQ, `qweight` int32 [in, out / 8] packs along the *output* dimension, eight
outputs a word in the order 0, 2, 4, 6, 1, 3, 5, 7 (output j of a word sits at nibble `[0, 4, 1, 5, 2, 6, 3,
7][j]`); `qzeros` int32 [groups, out / 8] the same way; `scales` [groups, out]; groups are consecutive inputs.
`W.T = (q - zeros) * scales`, with no +1 on the zero points. Other packings (`gemv`, `exllama`...) are refused
by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, groups_of

_SCALES = ("F16", "BF16", "F32")
# Bit position of output j of a word: 4 * AWQ_REVERSE_ORDER[j].
_SHIFTS = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7], dtype=torch.int32) * 4


def unpack_columns(packed: torch.Tensor) -> torch.Tensor:
    """AWQ words [r, c] -> 4-bit values [r, c * 8] in output order."""
    values = (packed.unsqueeze(-1) >> _SHIFTS) & 0xF
    return values.reshape(packed.shape[0], packed.shape[1] * 8)


class AWQ(QuantFormat):
    """An AWQ GEMM layer: `<module>.qweight`, `.qzeros`, `.scales`."""

    label = "AWQ"
    markers = (".qweight",)
    mapped = ("qweight",)  # only read, a slice of words at a time: no copy out of the page cache

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        qc = self.config
        if qc.bits not in (None, 4):
            raise self.refuse(self.config_path, f"AWQ with bits={qc.bits} is not supported (lineage reads 4-bit AWQ)")
        if qc.version != "gemm":
            raise self.refuse(self.config_path, f"AWQ packing version '{qc.version}' is not supported "
                              "(lineage reads the GEMM packing)")  # fmt: skip
        name, qweight = prefix + ".weight", prefix + marker
        info = self.part(stored, qweight, ("I32",), None, qweight)
        if len(info.shape) != 2:
            raise self.refuse(stored.path(qweight), f"tensor '{qweight}' is not a matrix; {FIX}")
        cols, out = info.shape[0], info.shape[1] * 8
        groups = groups_of(cols, qc.group_size)
        parts = {"qweight": qweight, "qzeros": prefix + ".qzeros", "scales": prefix + ".scales"}
        scales = stored.infos.get(parts["scales"])
        if scales is not None and len(scales.shape) == 2 and scales.shape[0] != groups:
            raise self.refuse(
                stored.path(parts["scales"]), f"tensor '{parts['scales']}' has {scales.shape[0]} groups, but "
                f"quantization_config's group_size {qc.group_size} makes {groups} of the {cols} inputs; the config "
                "contradicts the tensors",
            )  # fmt: skip
        self.part(stored, parts["scales"], _SCALES, (groups, out), qweight)
        self.part(stored, parts["qzeros"], ("I32",), (groups, out // 8), qweight)
        size = qc.group_size if qc.group_size not in (None, -1) else cols
        if cols % size:
            raise self.refuse(stored.path(qweight), f"{cols} inputs are not whole groups of {size}; {FIX}")
        return QuantWeight(name, (out, cols), "AWQ-4bit", parts, {"size": size})

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        scales = self.finite(stored, weight.parts["scales"], parts["scales"]).float()
        return parts["qweight"], unpack_columns(parts["qzeros"]), scales

    def noise(self, weight: QuantWeight, read: Callable[[str], torch.Tensor], stored: Stored) -> torch.Tensor:
        scales = self.finite(stored, weight.parts["scales"], read(weight.parts["scales"])).double()
        return scales.square().sum(0) * weight.extra["size"] / 12  # one scale step a value

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        qweight, zeros, scales = state
        first, last = lo // 8, -(-hi // 8)  # the words holding outputs lo .. hi-1
        q = unpack_columns(qweight[:, first:last])[:, lo - 8 * first : hi - 8 * first]  # [in, hi - lo]
        size, n = weight.extra["size"], hi - lo
        z, s = zeros[:, lo:hi].unsqueeze(1), scales[:, lo:hi].unsqueeze(1)
        return ((q.view(-1, size, n) - z).float() * s).view(-1, n).T.contiguous()
