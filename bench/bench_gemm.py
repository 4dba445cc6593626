"""The probe product's speed by its number of probe columns: why the engine pads them to a multiple of 16.

Every weight block of the fingerprint meets its probes in one product `W_block @ X^T` (`lineage.probe.engine`).
The number of probe columns is set by the recipe (64 anchors + 12 probes = 76 for most weights, 15 for the
embedding), and a GEMM kernel works in whole register tiles of columns: a ragged last tile can cost more than
the zero columns that would fill it. This prints GFLOP/s of `torch.mm(W_block, X^T, out=Y)` (float32, the
engine's CPU block of 8 MB of bf16 weights) for the column counts the engine makes and their padded widths,
so the choice can be re-checked on any machine.

Usage:
    python bench/bench_gemm.py [--repeat 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

SHAPES = ((2048, 2048), (512, 8192))  # an 8 MB bf16 block of a 2048-wide and of an 8192-wide weight
COLUMNS = ((15, 16), (76, 80), (79, 80), (92, 96), (95, 96))  # (as the recipe makes them, padded)


def gflops(rows: int, inner: int, columns: int, device: torch.device, repeat: int) -> float:
    """Median GFLOP/s of the block product over `repeat` timings of 50 products each."""
    w = torch.randn(rows, inner, device=device)
    x_t = torch.randn(inner, columns, device=device)
    y = torch.empty(rows, columns, device=device)
    runs = []
    for _ in range(repeat + 1):  # the first timing warms the kernel and is dropped
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(50):
            torch.mm(w, x_t, out=y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append(2 * rows * inner * columns * 50 / (time.perf_counter() - start) / 1e9)
    return statistics.median(runs[1:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per cell; the median is printed")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; GFLOP/s, median of "
          f"{args.repeat}; time per block in microseconds")  # fmt: skip
    head = f"{'GFLOP/s':>8} {'us':>7}"
    print(f"{'block':>11} {'columns':>8} {head}   {'padded':>6} {head}   time saved")
    for rows, inner in SHAPES:
        for raw, padded in COLUMNS:
            a, b = (gflops(rows, inner, n, device, args.repeat) for n in (raw, padded))
            ta, tb = (2 * rows * inner * n / g / 1e3 for n, g in ((raw, a), (padded, b)))
            print(f"{rows:>5}x{inner:<5} {raw:>8} {a:>8.0f} {ta:>7.0f}   {padded:>6} {b:>8.0f} {tb:>7.0f}   "
                  f"{1 - tb / ta:.0%}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
