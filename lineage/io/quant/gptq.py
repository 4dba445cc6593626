"""GPTQ (`qweight`, `qzeros`, `scales`, `g_idx`): AutoGPTQ and GPTQModel checkpoints, 2, 4 and 8 bits.

Layout and formula (llama.cpp `convert_hf_to_gguf.py`, `dequant_gptq`, after GPTQModel's `dequantize_weight`):
`qweight` int32 [in * bits / 32, out] packs consecutive *input* rows of the transposed weight into each word,
lowest bits first; `qzeros` int32 [groups, out * bits / 32] packs the zero points the same way along the output
dimension; `scales` [groups, out]; `g_idx` int32 [in] maps each input to its group (act-order, `desc_act`,
permutes it). `W.T = scales[g_idx].float() * (q - zeros[g_idx]).float()`, where the `gptq` checkpoint format
(v1) stores zero points minus one, so one is added back, and `gptq_v2` stores them as they are. 3-bit GPTQ packs
values across word boundaries: refused by name, as llama.cpp does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from lineage.io.quant.base import FIX, QuantFormat, QuantWeight, Stored, group_counts, groups_of

_SCALES = ("F16", "BF16", "F32")
_BITS = (2, 4, 8)


def unpack_rows(packed: torch.Tensor, bits: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """int32 words [r, c] -> their values [r * 32 / bits, c], word i holding rows i*k ... i*k + k-1 from its
    lowest bits up (k = 32 / bits), or in the bit positions `shifts` gives."""
    k = 32 // bits
    shifts = shifts if shifts is not None else torch.arange(0, 32, bits, dtype=torch.int32)
    values = (packed.unsqueeze(1) >> shifts.view(1, k, 1)) & ((1 << bits) - 1)
    return values.reshape(packed.shape[0] * k, packed.shape[1])


def unpack_bytes(words: torch.Tensor, bits: int, scratch: dict | None = None) -> torch.Tensor:
    """int32 words [r, c] -> their values [r, c * 32 / bits] along each row, lowest bits first: int8 (int16 for 8
    bits, whose zero points reach 256). Works on the words' bytes; `scratch` keeps the buffers between calls.

    4 bits, the common case, costs five passes of two bytes a byte: each byte `b` becomes the int16
    `(b & 0xF) | (b & 0xF0) << 4`, whose two bytes in memory are the two values in order.
    """
    if sys.byteorder != "little":  # a word's bytes in memory order are its bits in order only on little-endian
        return unpack_rows(words.T.contiguous(), bits).T.contiguous().to(torch.int16 if bits == 8 else torch.int8)
    raw = words.contiguous().view(torch.uint8)
    if bits == 8:
        return raw.to(torch.int16)
    if bits == 4:
        scratch = {} if scratch is None else scratch
        if scratch.get("shape") != raw.shape:
            scratch |= {"shape": raw.shape, "a": torch.empty(raw.shape, dtype=torch.int16),
                        "b": torch.empty(raw.shape, dtype=torch.int16)}  # fmt: skip
        pair, high = scratch["a"], scratch["b"]
        pair.copy_(raw)
        torch.bitwise_left_shift(pair, 4, out=high).bitwise_and_(0x0F00)
        pair.bitwise_and_(0x000F).bitwise_or_(high)
        return pair.view(torch.int8).view(words.shape[0], -1)
    mask = (1 << bits) - 1
    values = torch.stack([(raw >> (bits * j)) & mask for j in range(8 // bits)], dim=-1)
    return values.view(words.shape[0], -1).view(torch.int8)


def _pair_table() -> torch.Tensor:
    """For every zero point z in 0..16 and byte b: the two 4-bit values of b minus z, as float32 in memory order
    (low nibble first), stored as one int64: `[17 * 256]`. One gather of it turns a row of packed bytes into the
    row's values minus their zero point, exactly, in the order they belong."""
    b = torch.arange(256)
    pairs = torch.stack((b & 0xF, b >> 4), dim=1).float().unsqueeze(0) - torch.arange(17).float().view(17, 1, 1)
    return pairs.contiguous().view(torch.int64).view(-1)


_PAIRS = _pair_table() if sys.byteorder == "little" else None  # a word's bytes are its nibbles in order


class GPTQ(QuantFormat):
    """A GPTQ layer: `<module>.qweight`, `.qzeros`, `.scales` and (usually) `.g_idx`."""

    label = "GPTQ"
    markers = (".qweight",)
    mapped = ("qweight",)  # only copied from (made row-major once): no copy out of the page cache first

    def plan(self, prefix: str, marker: str, stored: Stored) -> QuantWeight:
        qc = self.config
        name, qweight = prefix + ".weight", prefix + marker
        bits = qc.bits if qc is not None else None
        if bits not in _BITS:
            what = "3-bit GPTQ packing (values across int32 words)" if bits == 3 else f"GPTQ with bits={bits}"
            raise self.refuse(self.config_path, f"{what} is not supported (lineage reads 2-, 4- and 8-bit GPTQ)")
        if qc.checkpoint_format not in ("gptq", "gptq_v2"):
            raise self.refuse(self.config_path, f"checkpoint_format '{qc.checkpoint_format}' is not supported "
                              "(lineage reads 'gptq' and 'gptq_v2')")  # fmt: skip
        info = self.part(stored, qweight, ("I32",), None, qweight)
        if len(info.shape) != 2:
            raise self.refuse(stored.path(qweight), f"tensor '{qweight}' is not a matrix; {FIX}")
        cols, out = info.shape[0] * 32 // bits, info.shape[1]
        groups = groups_of(cols, qc.group_size)
        parts = {"qweight": qweight, "qzeros": prefix + ".qzeros", "scales": prefix + ".scales"}
        if out * bits % 32:
            raise self.refuse(stored.path(qweight), f"tensor '{qweight}' has {out} outputs, which {bits}-bit "
                              f"zero points cannot pack into int32 words; {FIX}")  # fmt: skip
        scales = stored.infos.get(parts["scales"])
        if scales is not None and len(scales.shape) == 2 and scales.shape[0] != groups:
            raise self.refuse(
                stored.path(parts["scales"]), f"tensor '{parts['scales']}' has {scales.shape[0]} groups, but "
                f"quantization_config says bits {bits} and group_size {qc.group_size}: {groups} groups of the "
                f"{cols} inputs '{qweight}' packs; the config contradicts the tensors",
            )  # fmt: skip
        self.part(stored, parts["scales"], _SCALES, (groups, out), qweight)
        self.part(stored, parts["qzeros"], ("I32",), (groups, out * bits // 32), qweight)
        if prefix + ".g_idx" in stored.infos:
            parts["g_idx"] = prefix + ".g_idx"
            self.part(stored, parts["g_idx"], ("I32", "I64"), (cols,), qweight)
        return QuantWeight(name, (out, cols), f"GPTQ-{bits}bit", parts,
                           {"bits": bits, "groups": groups, "v1": qc.checkpoint_format == "gptq"})  # fmt: skip

    def load(self, weight: QuantWeight, parts: dict[str, torch.Tensor], stored: Stored) -> Any:
        bits, groups, cols = weight.extra["bits"], weight.extra["groups"], weight.shape[1]
        scales = self.finite(stored, weight.parts["scales"], parts["scales"]).float()
        zeros = unpack_rows(parts["qzeros"].T, bits).T  # packed along the outputs: unpack the transposed words
        if weight.extra["v1"]:
            zeros = zeros + 1
        g_idx = parts.get("g_idx")
        size = self.config.group_size if self.config.group_size not in (None, -1) else cols
        ordered = torch.arange(cols) // size
        if g_idx is not None:
            g_idx = g_idx.long()
            if g_idx.numel() and (int(g_idx.min()) < 0 or int(g_idx.max()) >= groups):
                raise self.refuse(
                    stored.path(weight.parts["g_idx"]), f"tensor '{weight.parts['g_idx']}' holds group numbers "
                    f"{int(g_idx.min())} to {int(g_idx.max())}, outside the {groups} groups of the scales; {FIX}",
                )  # fmt: skip
            if torch.equal(g_idx, ordered):
                g_idx = None  # groups in input order: scales broadcast over whole groups, no gather
        if g_idx is None and cols % size:
            g_idx = ordered
        # Per output row, as the rows are made: [out, groups].
        zeros = zeros.T.contiguous().to(torch.int16 if bits == 8 else torch.int8)
        scratch: dict[str, Any] = {}
        if bits == 4 and g_idx is None and _PAIRS is not None and size % 2 == 0:
            # The 4-bit fast path reads each zero point as the page of the pair table it selects: one page for
            # all (symmetric GPTQ, the common case), else an offset added to each group's byte indices.
            first = int(zeros.flatten()[0])
            same = bool((zeros == first).all())
            scratch["page"] = _PAIRS[first * 256 : (first + 1) * 256] if same else None
            scratch["offsets"] = None if same else zeros.to(torch.int32).mul_(256)
        # The words made row-major once, whole: a whole matrix transposes in blocks, a slice of rows at a time
        # strides (seven times slower).
        packed = parts["qweight"]
        qweight = stored.take("words", packed.numel(), torch.int32).view(packed.shape[::-1]).copy_(packed.T)
        return qweight, zeros, scales.T.contiguous(), g_idx, size, scratch | {"stored": stored}

    def release(self, state: Any, stored: Stored) -> None:
        stored.give("words", state[0])
        if "index" in state[5]:
            stored.give("index", state[5].pop("index"))

    def noise(self, weight: QuantWeight, read: Callable[[str], torch.Tensor], stored: Stored) -> torch.Tensor:
        # Every value of a group is one scale step wide: the scales (and how many inputs each group has) suffice.
        scales = self.finite(stored, weight.parts["scales"], read(weight.parts["scales"])).double()
        groups, cols = weight.extra["groups"], weight.shape[1]
        if "g_idx" in weight.parts:
            g_idx = read(weight.parts["g_idx"]).long().clamp(0, groups - 1)  # ranges are checked where it is read
            counts = torch.bincount(g_idx, minlength=groups).double()
        else:
            size = self.config.group_size if self.config.group_size not in (None, -1) else cols
            counts = group_counts(cols, size)
        return (scales.square() * counts.unsqueeze(1)).sum(0) / 12

    def rows(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None = None) -> torch.Tensor:
        qweight, zeros, scales, g_idx, size, scratch = state
        if "page" in scratch:
            return self._rows4(weight, state, lo, hi, out)
        n = hi - lo
        # [n, in] integers, in a scratch buffer that is this call's to change.
        q = unpack_bytes(qweight[lo:hi], weight.extra["bits"], scratch)
        out = torch.empty(n, weight.shape[1]) if out is None else out
        # (q - z) is exact in integers; then one float32 product per value, as the reference computes it.
        if g_idx is not None:  # index_select: plain indexing with a tensor is far slower on CPU
            out.copy_(q - zeros[lo:hi].index_select(1, g_idx))
            return out.mul_(scales[lo:hi].index_select(1, g_idx))
        grouped = out.view(n, -1, size)
        grouped.copy_(q.view(n, -1, size).sub_(zeros[lo:hi].unsqueeze(-1)))
        grouped.mul_(scales[lo:hi].unsqueeze(-1))
        return out

    def _rows4(self, weight: QuantWeight, state: Any, lo: int, hi: int, out: torch.Tensor | None) -> torch.Tensor:
        """4-bit rows in groups of consecutive inputs: four passes, where bit twiddling takes nine.

        The packed words of the rows (made row-major by `load`) are read as bytes and widened to int32 indices
        (plus each group's zero-point page); one gather of the pair table writes every value minus its zero point
        as float32 straight into the output, two a byte; one product applies the scales. Exact: `(q - z)` is a
        small integer, then one float32 product per value, as the reference computes it.
        """
        qweight, _, scales, _, size, scratch = state
        n, cols = hi - lo, weight.shape[1]
        if scratch.get("rows") != n:  # a buffer for this many rows, reused chunk after chunk and weight after weight
            if "index" in scratch:
                scratch["stored"].give("index", scratch["index"])
            scratch |= {"rows": n, "index": scratch["stored"].take("index", n * cols // 2, torch.int32).view(n, -1)}
        index = scratch["index"]
        index.copy_(qweight[lo:hi].view(torch.uint8).view(n, cols // 2))
        table = scratch["page"]
        if table is None:
            index.view(n, -1, size // 2).add_(scratch["offsets"][lo:hi].unsqueeze(-1))
            table = _PAIRS
        out = torch.empty(n, cols) if out is None else out
        torch.index_select(table, 0, index.view(-1), out=out.view(-1).view(torch.int64))
        grouped = out.view(n, -1, size)
        grouped.mul_(scales[lo:hi].unsqueeze(-1))
        return out
