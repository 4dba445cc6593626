"""How one Hugging Face tensor is read from a GGUF file: a stored tensor, an expert's slice of a stack, or rows
of several stored tensors joined again (the plans `lineage.io.gguf_layout` makes, `lineage.io.gguf_reader` reads).

llama.cpp's converter stacks a mixture's experts `[E, out, in]`, splits a stacked layout's `gate_up` into gate
and up stacks (transposing `[E, in, out]` ones), may fuse every gate and up stack of a layer into one
`ffn_gate_up_exps` (gate rows first) and transposes GPT-2's Conv1D weights (`lineage.arch.gguf`). A plan names the
stored rows each Hugging Face tensor is made of, so the reader gives back the Hugging Face shape and values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf.constants import MODEL_TENSOR, TENSOR_NAMES

from lineage.arch.gguf import FUSED_GATE_UP, GATE_UP_PARTS
from lineage.arch.spec import ArchSpec
from lineage.errors import CheckpointError, UnsupportedArchitectureError

BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class TensorPlan:
    """How one GGUF tensor becomes its Hugging Face tensor.

    Attributes:
        gguf_name: the name in the file.
        hf_name: the Hugging Face name.
        head_groups: for a permuted Q or K, the number of heads the converter permuted by; else None.
        norm_shift: subtracted from the stored values (1.0 for Gemma norms, else 0.0).
        expert: the entry of the stacked tensor's first dimension read (one expert of `ffn_*_exps`), or None.
        joined: the GGUF name of the second part of a tensor the converter split in two (`attn_v_b` beside
            `gguf_name`'s `attn_k_b`), or None.
        parts: `(GGUF name, first row, end row or None)` of the stored matrices (of each expert, in a stack) whose
            rows, joined, make the Hugging Face matrix (gate then up rows of a split `gate_up`); empty for a
            tensor read as it is stored.
        interleave: the parts' rows alternate in the Hugging Face matrix (gpt-oss's gate and up).
        transpose: the Hugging Face matrix is the transpose of the joined parts (Conv1D, `[in, out]` stacks).
        stacked: the Hugging Face tensor holds every expert of the parts' stacks (`[E, ...]`).
    """

    gguf_name: str
    hf_name: str
    head_groups: int | None = None
    norm_shift: float = 0.0
    expert: int | None = None
    joined: str | None = None
    parts: tuple[tuple[str, int, int | None], ...] = ()
    interleave: bool = False
    transpose: bool = False
    stacked: bool = False

    def __post_init__(self) -> None:
        if self.head_groups is not None and self.head_groups <= 0:
            raise ValueError("head_groups must be positive")
        if self.expert is not None and self.expert < 0:
            raise ValueError("expert must be a non-negative index")
        if (self.interleave or self.transpose or self.stacked) and not self.parts:
            raise ValueError("a joined, transposed or stacked tensor names its parts")

    def row_map(self, rows: int) -> np.ndarray | None:
        """For each Hugging Face row, the stored row it comes from (None when rows are not permuted).

        The converter stores `w.reshape(n, 2, d // n // 2, ...).swapaxes(1, 2)`: Hugging Face row
        `h*d + t*d/2 + j` of head `h` sits at stored row `h*d + 2*j + t`.
        """
        if self.head_groups is None:
            return None
        size = rows // self.head_groups
        hf = np.arange(rows)
        head, within = np.divmod(hf, size)
        half, j = np.divmod(within, size // 2)
        return head * size + 2 * j + half


def fused_kind(stem: str) -> MODEL_TENSOR | None:
    """`FUSED_GATE_UP` for its name (`blk.N.ffn_gate_up_exps`), which gguf-py lists only for the architectures
    whose converter writes it (none that lineage maps: the stack means the same wherever it is found)."""
    m = BLOCK.match(stem)
    return FUSED_GATE_UP if m and stem == gguf_name(FUSED_GATE_UP, int(m[1])) else None


def block_of(name: str) -> int:
    return int(name.split(".")[1])


def _stack(path: Path, name: str, dims: tuple[int, ...] | None) -> tuple[int, int]:
    """`(experts, rows of each)` of a stacked weight `[E, out, in]` (GGML order `[in, out, E]`)."""
    if dims is None:
        raise CheckpointError(path, f"tensor '{name}' is missing beside the other expert stacks of its block: "
                              "truncated or corrupt file; re-convert the model")  # fmt: skip
    return expert_count(path, name, dims), int(dims[1])


def fused_expert_plans(
    path: Path, name: str, dims: tuple[int, ...], spec: ArchSpec | None, block: int
) -> list[TensorPlan]:  # fmt: skip
    """Each expert's gate and up rows of a fused `ffn_gate_up_exps` stack, under a per-expert layout's names."""
    ex = spec.experts if spec is not None else None
    if ex is None or not (ex.gate and ex.up and "{e}" in ex.gate):
        raise UnsupportedArchitectureError(f"{path}: tensor '{name}' fuses gate and up experts, which the layout "
                                           f"{spec.name if spec else None!r} does not hold")  # fmt: skip
    experts, rows = _stack(path, name, dims)
    if rows % 2:
        raise CheckpointError(path, f"tensor '{name}' stacks {rows} gate and up rows per expert, not an even "
                              "number: corrupt file; re-convert the model")  # fmt: skip
    half, full = rows // 2, f"model.{spec.stem}.{block}."
    return [TensorPlan(name, full + t.format(e=e), expert=e, parts=((name, lo, lo + half),))
            for e in range(experts) for t, lo in ((ex.gate, 0), (ex.up, half))]  # fmt: skip


def stacked_plans(path: Path, spec: ArchSpec, block: int, shapes: dict[str, tuple[int, ...]]) -> list[TensorPlan]:
    """A stacked layout's expert tensors of one block, joined back from the converter's `[E, out, in]` stacks:
    gate then up rows (concatenated, or alternating where the layout interleaves them), transposed where the
    layout stores `[E, in, out]`; biases likewise, without the transpose (`lineage.arch.gguf`)."""
    ex, full = spec.experts, f"model.{spec.stem}.{block}."
    names = {k: gguf_name(k, block) for k in (*GATE_UP_PARTS, FUSED_GATE_UP, MODEL_TENSOR.FFN_DOWN_EXP)}
    if names[FUSED_GATE_UP] + ".weight" not in shapes and not any(n + ".weight" in shapes for n in names.values()):
        return []  # a dense layer
    gate, up = (names[k] for k in GATE_UP_PARTS)
    fused = names[FUSED_GATE_UP] + ".weight"
    if fused in shapes:
        _, rows = _stack(path, fused, shapes[fused])
        halves: tuple[tuple[str, int, int | None], ...] = ((fused, 0, rows // 2), (fused, rows // 2, rows))
        weights = halves if ex.interleaved else ((fused, 0, None),)
    else:
        for n in (gate, up):
            _stack(path, n + ".weight", shapes.get(n + ".weight"))
        weights = ((gate + ".weight", 0, None), (up + ".weight", 0, None))
    down = names[MODEL_TENSOR.FFN_DOWN_EXP]
    _stack(path, down + ".weight", shapes.get(down + ".weight"))
    gate_up = ex.gate_up or ex.gate
    out = [
        TensorPlan(weights[0][0], full + gate_up, parts=weights, interleave=ex.interleaved and len(weights) == 2,
                   transpose=ex.transposed, stacked=True),
        TensorPlan(down + ".weight", full + ex.down, parts=((down + ".weight", 0, None),), transpose=ex.transposed,
                   stacked=True),
    ]  # fmt: skip
    if ex.gate_up_bias and gate + ".bias" in shapes and up + ".bias" in shapes:
        out.append(TensorPlan(gate + ".bias", full + ex.gate_up_bias, parts=((gate + ".bias", 0, None),
                   (up + ".bias", 0, None)), interleave=ex.interleaved, stacked=True))  # fmt: skip
    if ex.down_bias and down + ".bias" in shapes:
        out.append(TensorPlan(down + ".bias", full + ex.down_bias))
    return out


def gguf_name(kind: MODEL_TENSOR, block: int) -> str:
    return TENSOR_NAMES[kind].format(bid=block)


def expert_count(path: Path, name: str, dims: tuple[int, ...]) -> int:
    """The number of experts a stacked tensor holds (GGML order: `[in, out, E]`)."""
    if len(dims) != 3 or dims[-1] <= 0:
        raise CheckpointError(path, f"tensor '{name}' stacks experts but has dimensions {list(dims)}, not "
                              "[in, out, experts]: corrupt file; re-convert the model")  # fmt: skip
    return int(dims[-1])
