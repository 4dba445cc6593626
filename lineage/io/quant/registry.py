"""Which quantised format a checkpoint holds, and the logical tensor table it presents.

The formats are listed here explicitly, one per `quant_method`; the tensors decide nothing on their own except
where a format carries its whole description in its tensors (bitsandbytes' quant state). A checkpoint whose
tensors betray one format while its `quantization_config` names another (or none) is refused in one line naming
both, never read with the wrong formula.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lineage.errors import CheckpointError
from lineage.io.header import TensorInfo
from lineage.io.quant.awq import AWQ
from lineage.io.quant.base import QuantFormat, QuantTensorInfo, QuantWeight, Stored
from lineage.io.quant.bnb import BitsAndBytes
from lineage.io.quant.compressed import CompressedTensors
from lineage.io.quant.config import METHODS, QuantConfig, parse_quant_config
from lineage.io.quant.fp8 import FP8Block
from lineage.io.quant.gptq import GPTQ
from lineage.io.quant.mxfp4 import MXFP4

FORMATS: dict[str, type[QuantFormat]] = {
    "fp8": FP8Block,
    "gptq": GPTQ,
    "awq": AWQ,
    "compressed-tensors": CompressedTensors,
    "bitsandbytes": BitsAndBytes,
    "mxfp4": MXFP4,
}

# Stored-name suffixes that only a quantised format writes, and the formats they betray.
_SIGNS = (
    (".weight_scale_inv", "FP8"),
    (".qweight", "GPTQ or AWQ"),
    (".weight_packed", "compressed-tensors"),
    (".quant_state.bitsandbytes__nf4", "bitsandbytes"),
    (".quant_state.bitsandbytes__fp4", "bitsandbytes"),
    (".SCB", "bitsandbytes"),
    ("_blocks", "MXFP4"),
)
#: Reads one stored tensor whole, or the entries `[a, b)` of its first dimension when given `(a, b)`; with
#: `mapped=True`, maybe as a read-only view of the file's pages (valid while the tensor lives).
Read = Callable[..., torch.Tensor]
CHUNK_BYTES = 8 << 20  # float32 values dequantised at once: few chunks a matrix, and they stay in cache
# Activation scales and format flags: nothing a weight is made of; hidden with the parts.
_AUXILIARY = (".input_scale", ".input_zero_point", ".output_scale", ".activation_scale", ".weight_format",
              ".k_scale", ".v_scale")  # fmt: skip


@dataclass(frozen=True)
class QuantLayout:
    """The logical tensor table of a quantised checkpoint, and how to read each quantised weight.

    Attributes:
        infos: the table the rest of lineage sees: plain tensors as stored, each quantised layer as one
            logical weight (`QuantTensorInfo`), the parts hidden.
        weights: logical name -> (format, planned weight).
        config: the parsed `quantization_config` (None when the format needs none).
        stored: the stored tensors the parts are read from (and named by messages).
    """

    infos: dict[str, TensorInfo]
    weights: dict[str, tuple[QuantFormat, QuantWeight]]
    config: QuantConfig | None
    stored: Stored

    def blocks(self, name: str, step: int, read: Read) -> Iterator[tuple[int, torch.Tensor]]:
        """The weight `name` dequantised in blocks of `step` rows; its parts are read once.

        Rows are dequantised a chunk of up to `CHUNK_BYTES` at a time into one buffer, reused, and handed out a
        block at a time: a format's dozen small tensor operations then run a few times a matrix rather than a
        few hundred (each is a parallel region: on a busy machine it waits for its threads, whatever its size).
        A stack of experts is read and dequantised a block of experts at a time.
        """
        fmt, weight = self.weights[name]
        if weight.extra.get("stacked"):
            for first in range(0, weight.shape[0], step):
                yield first, self.runs(name, [(first, min(weight.shape[0], first + step))], read)
            return
        state = self._load(fmt, weight, read)
        rows, cols = weight.shape
        chunk = max(step, CHUNK_BYTES // (4 * cols) // step * step)
        # One output buffer for every chunk, and for every weight: no page faults per block, nor per weight.
        buffer = self.stored.take("chunk", min(chunk, rows) * cols, torch.float32)
        try:
            for first in range(0, rows, chunk):
                last = min(rows, first + chunk)
                values = fmt.rows(weight, state, first, last, buffer[: (last - first) * cols].view(last - first, cols))
                for lo in range(first, last, step):
                    yield lo, values[lo - first : min(last, lo + step) - first]
        finally:
            self.stored.give("chunk", buffer)
            fmt.release(state, self.stored)

    def runs(self, name: str, runs: list[tuple[int, int]], read: Read) -> torch.Tensor:
        """The rows of `[start, stop)` runs of the weight `name`, dequantised and concatenated (for a stack of
        experts, each run's experts read alone)."""
        fmt, weight = self.weights[name]
        if weight.extra.get("stacked"):
            pieces = [fmt.rows(weight, self._load(fmt, weight, read, (a, b)), 0, b - a) for a, b in runs]
        else:
            state = self._load(fmt, weight, read)
            pieces = [fmt.rows(weight, state, a, b) for a, b in runs]
            fmt.release(state, self.stored)
        return torch.cat(pieces) if pieces else torch.empty((0, *weight.shape[1:]))

    def noise(self, name: str, read: Read, expert: int | None = None) -> torch.Tensor:
        """Per logical row of the weight `name`, the expected squared rounding error of its values (float64 [out]):
        what its quantisation alone moved it by (`QuantFormat.noise`). For a stack of experts, expert `expert`'s
        per output ([E, out] for all of them when None)."""
        fmt, weight = self.weights[name]
        if weight.extra.get("stacked"):
            if expert is None:
                return torch.cat([self.noise(name, read, e)[None] for e in range(weight.shape[0])])
            return fmt.state_noise(weight, self._load(fmt, weight, read, (expert, expert + 1)))[0]
        return fmt.noise(weight, read, self.stored)

    def _load(self, fmt: QuantFormat, weight: QuantWeight, read: Read, rows: tuple[int, int] | None = None) -> Any:
        parts = {role: read(stored, rows, mapped=role in fmt.mapped) for role, stored in weight.parts.items()}
        return fmt.load(weight, parts, self.stored)


def quantized_layout(
    infos: dict[str, TensorInfo], config: dict[str, Any], folder: Path, config_path: Path,
    read: Callable[[str], torch.Tensor],
) -> QuantLayout | None:  # fmt: skip
    """The quantised layout of a checkpoint's stored tensors, None when nothing is quantised.

    Args:
        infos: the stored tensors by name.
        config: the parsed config.json ({} when absent).
        folder: the model folder (messages name the file holding each tensor).
        config_path: config.json (messages about the quantisation config name it).
        read: reads one stored tensor whole (small parts are read while planning: shapes, quant states).

    Raises:
        CheckpointError: an unsupported method, bit width or packing; a config that contradicts the tensors;
            parts missing or of the wrong shape or dtype.
    """
    try:
        qc = parse_quant_config(config)
    except ValueError as exc:
        raise CheckpointError(config_path, f"{exc}; restore config.json") from None
    names = set(infos)
    signs = sorted((n, label) for n in names for suffix, label in _SIGNS if n.endswith(suffix))
    if qc is None:
        if not signs:
            return None
        if any(label != "bitsandbytes" for _, label in signs):  # bitsandbytes' quant state describes itself
            name, label = next((n, la) for n, la in signs if la != "bitsandbytes")
            raise CheckpointError(
                folder / infos[name].file,
                f"tensor '{name}' is stored quantised ({label}), but config.json has no quantization_config to say "
                "how; restore config.json",
            )
        qc = QuantConfig(method="bitsandbytes")
    if qc.method not in FORMATS:
        if signs or any(i.dtype.startswith(("I", "U", "F8")) for i in infos.values()):
            raise CheckpointError(
                config_path, f"quantization method '{qc.method}' is not supported (lineage reads "
                f"{', '.join(METHODS)})",
            )  # fmt: skip
        return None  # a stale block over plain float weights: nothing to dequantise
    if qc.method == "compressed-tensors" and qc.format in ("dense", None) and not signs:
        return None
    fmt = FORMATS[qc.method](qc, config_path)
    foreign = [(n, label) for n, label in signs if label not in (qc.label, "GPTQ or AWQ" if qc.method in
               ("gptq", "awq") else "")]  # fmt: skip
    if foreign:
        name, label = foreign[0]
        raise CheckpointError(
            folder / infos[name].file,
            f"quantization_config says {qc.label}, but tensor '{name}' is stored as {label} writes it: the config "
            "contradicts the tensors; restore config.json",
        )
    stored = Stored(infos, folder, read)
    weights: dict[str, tuple[QuantFormat, QuantWeight]] = {}
    for prefix, marker in fmt.prefixes(names):
        weight = fmt.plan(prefix, marker, stored)
        if weight.name in infos and weight.name not in weight.parts.values():
            raise CheckpointError(
                folder / infos[weight.name].file, f"{fmt.label}: tensor '{weight.name}' is stored both plain and "
                f"quantised ('{prefix}{marker}'): the checkpoint mixes two exports; re-export it",
            )  # fmt: skip
        weights[weight.name] = (fmt, weight)
    if not weights:
        raise CheckpointError(
            config_path, f"quantization_config says {qc.label}, but no tensor is stored so (none ends in "
            f"{' or '.join(fmt.markers)}): the config contradicts the tensors; restore config.json",
        )  # fmt: skip
    return QuantLayout(_logical_table(infos, weights), weights, qc, stored)


def _logical_table(
    infos: dict[str, TensorInfo], weights: dict[str, tuple[QuantFormat, QuantWeight]]
) -> dict[str, TensorInfo]:
    hidden = {part for _, w in weights.values() for part in (*w.parts.values(), *w.hidden)}
    table = {n: i for n, i in infos.items() if n not in hidden and not n.endswith(_AUXILIARY)}
    for name, (_, w) in weights.items():
        anchor = infos[next(iter(w.parts.values()))]
        size = sum(infos[p].nbytes for p in w.parts.values())
        table[name] = QuantTensorInfo(name, w.dtype, w.shape, anchor.file, 0, size)
    return table
