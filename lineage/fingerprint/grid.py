"""Whether a weight matrix's values lie on a quantisation grid: the mark a dequantised copy keeps.

A quantised model published dequantised (an int8 or int4 round trip saved in float32, bfloat16 or float16, or
a GGUF or GPTQ file read back as floats) keeps its quantiser's grid: each group of input columns of a row
holds values `offset + k * step` for integers `k` of a few bits. Quantisers cut rows into groups of 32 (llama.cpp's
Q8_0 and Q4_0, the catalog), 64 or 128 (GPTQ, AWQ) columns, or take the whole row (bitsandbytes' LLM.int8),
and pick the step from the group's values: symmetric absmax (`step = max|w| / qmax`, `qmax` = `2^(b-1) - 1`, or
`2^(b-1)` for llama.cpp's Q4_0, whose largest value sits at -8) or asymmetric min-max (`step = (max - min) /
(2^b - 1)`, offset `min`). A trained weight lies on no such grid: its offsets from the nearest grid point are
spread evenly, a mean of a quarter step.

`grid_bits` tries each hypothesis on a few rows and returns the fewest bits whose grid holds them: the mean
distance to the grid, in steps, under `ON_GRID`. Only values within `NEAR_STEPS` steps of the offset are
weighed (a stored bfloat16 keeps 8 significant bits, so a value `k` steps out sits up to `k / 512` of a step
off its grid point); exact zeros (on every grid, and what pruning leaves) and the values that set the step are
left out. A finer grid that contains a coarser one (63 levels hold every point of 7) is never reported for it:
the coarsest that fits wins.
"""

from __future__ import annotations

import math

import numpy as np

#: Bit widths tried, coarsest first (the first that fits is reported).
BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
#: Group sizes tried along the input dimension; 0 is the whole row.
GROUPS: tuple[int, ...] = (32, 64, 128, 0)
#: Mean distance to the grid, in steps, under which values lie on it (off a grid: 0.25; an int8 grid stored
#: in bfloat16: under 0.03 over the values weighed).
ON_GRID = 0.05
#: Only values within this many steps of the offset are weighed (bfloat16 rounding: at most 1/16 step there).
NEAR_STEPS = 32
#: Fewest values weighed for a verdict.
MIN_VALUES = 64
#: Rows of a matrix looked at, and columns of them for the grouped grids (a whole-row grid reads `ROW_ROWS` whole
#: rows): a few thousand values decide, and a wide model's matrix costs a few milliseconds (16 of them per model).
ROWS = 8
COLUMNS = 256
ROW_ROWS = 2
#: Decoder matrices looked at per model, spread over its layers (`lineage.fingerprint.pipeline`).
TENSORS = 16
#: What the fingerprint cache keys on (`lineage.fingerprint.pipeline.model_identity`): raise it when the test
#: changes, so entries made before miss.
GRID_VERSION = 2


def _groups(w: np.ndarray, size: int) -> np.ndarray:
    """`w` `[R, C]` as `[R * G, size]` groups of columns, the last padded with NaN (quantisers pad it too)."""
    rows, cols = w.shape
    if size == 0 or size >= cols:
        return w
    pad = (-cols) % size
    if pad:
        w = np.concatenate([w, np.full((rows, pad), np.nan)], axis=1)
    return w.reshape(-1, size)


def _mean_offgrid(g: np.ndarray, offset: np.ndarray, step: np.ndarray) -> tuple[float, int]:
    """Mean distance of the weighed values of groups `g` from their grids, in steps, and how many were weighed."""
    with np.errstate(invalid="ignore", divide="ignore"):
        k = (g - offset) / step
    near = np.round(k)
    keep = np.isfinite(k) & (g != 0) & (np.abs(k) <= NEAR_STEPS) & (np.abs(near) >= 1)
    # The values that set the step sit on the grid by construction: leave them out.
    keep &= (g != np.nanmax(g, axis=1, keepdims=True)) & (g != np.nanmin(g, axis=1, keepdims=True))
    n = int(keep.sum())
    return (float(np.abs(k - near)[keep].mean()) if n else math.inf), n


def _fits(g: np.ndarray, bits: int) -> bool:
    """Whether groups `g` lie on a `bits`-bit grid of any of the schemes (module docstring)."""
    top = np.nanmax(np.abs(g), axis=1, keepdims=True)
    lo, hi = np.nanmin(g, axis=1, keepdims=True), np.nanmax(g, axis=1, keepdims=True)
    zero = np.zeros_like(top)
    for offset, step in (
        (zero, top / (2 ** (bits - 1) - 1) if bits > 1 else top),
        (zero, top / 2 ** (bits - 1)),
        (lo, (hi - lo) / (2**bits - 1)),
    ):
        step = np.where(step > 0, step, np.nan)
        err, n = _mean_offgrid(g, offset, step)
        if n >= MIN_VALUES and err < ON_GRID:
            return True
    return False


def grid_bits(rows: np.ndarray) -> int | None:
    """The fewest bits of a quantisation grid that the rows' values lie on, or None (see the module docstring).

    Args:
        rows: `[R, C]` rows of one weight matrix (the first `ROWS` are looked at), any float dtype.

    Returns:
        The grid's bits (2-8), or None when the values lie on no grid tried.

    Example:
        >>> w = np.random.default_rng(0).normal(size=(8, 64))
        >>> grid_bits(w) is None
        True
        >>> step = np.abs(w).max(axis=1, keepdims=True) / 7  # int4, symmetric, one group per row
        >>> grid_bits(np.round(w / step) * step)
        4
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.size < MIN_VALUES:
        return None
    grouped = np.asarray(rows[:ROWS, :COLUMNS], dtype=np.float64)
    whole = grouped if rows.shape[1] <= COLUMNS else np.asarray(rows[:ROW_ROWS], dtype=np.float64)
    if not (np.isfinite(grouped).all() and np.isfinite(whole).all()):
        return None
    for bits in BITS:
        for size in GROUPS:
            if _fits(_groups(whole if size == 0 else grouped, size), bits):
                return bits
    return None
