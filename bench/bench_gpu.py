"""The CUDA path in one command: speed next to the warm read and the CPU, and CPU/CUDA agreement, one table.

For each shape (the Llama-3.2-1B and Llama-2-7B layouts of `make_checkpoint.py`, written when absent), in this
order: the warm read of the checkpoint (row a of `bench_fingerprint.py`), the fingerprint in process on the CPU
and on CUDA (`inprocess.py`: imports excluded; each writes its fingerprint), then the agreement of the two
fingerprints: the largest difference of every sketch, raw response and identity response relative to that
array's largest entry, and of every TensorGuard feature relative to itself. The promise is 1e-4 (float32
everywhere, TF32 off). Then the CPU/CUDA agreement test of the suite (`pytest -m cuda`) runs on the real
layouts. Everything runs under one deadline (`--budget`, default 280 s, so the whole fits a 5-minute device
slot); a stage that would start after it is reported as skipped, never half-measured.

Usage:
    python bench/bench_gpu.py [--shapes 1b,7b] [--budget 280] [--device cuda]

`--device cpu` runs the same stages with the CPU on both sides (a dry run of the script on a machine without
CUDA: the agreement must then be exact to float32 rounding).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import BENCH, checkpoint_files, ensure_checkpoint, in_process_command, machine_line, measure, read_command

AGREEMENT = 1e-4


def agreement(a: Path, b: Path) -> float:
    """The largest relative difference between two fingerprint files (see the module docstring)."""
    sys.path.insert(0, str(BENCH.parent))
    from lineage.fingerprint import load_fingerprint

    fa, fb = load_fingerprint(a), load_fingerprint(b)
    worst = 0.0
    for section in ("sketches", "responses", "identity"):
        xa, xb = getattr(fa, section), getattr(fb, section)
        for key in xa.keys() | xb.keys():
            if key not in xa or key not in xb:
                return float("inf")
            x, y = np.asarray(xa[key], np.float64), np.asarray(xb[key], np.float64)
            # float16 identity responses: one float16 step is the storage's own resolution, not a disagreement
            step = np.spacing(np.abs(y).astype(np.float16)).astype(np.float64) if xb[key].dtype == np.float16 else 0
            excess = np.maximum(np.abs(x - y) - step, 0.0)
            worst = max(worst, float(excess.max(initial=0.0)) / (float(np.abs(y).max(initial=0.0)) or 1.0))
    for key, value in fb.tensorguard.items():
        worst = max(worst, abs(fa.tensorguard[key] - value) / max(abs(value), 1e-6))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="1b,7b", help="comma-separated shapes (default: 1b,7b)")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds for everything (default: 280)")
    parser.add_argument("--device", default="cuda", help="the device measured against the CPU (default: cuda)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    left = lambda: deadline - time.monotonic()  # noqa: E731

    try:
        import torch

        device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu (dry run)"
    except (ImportError, RuntimeError, AssertionError) as exc:
        print(f"no CUDA device here ({type(exc).__name__}); nothing measured. `--device cpu` runs a dry run.")
        return 2
    header = f"{'shape':<5} {'GB':>6} {'read s':>7} {'cpu s':>7} {args.device + ' s':>8} {'dev/read':>8} " \
             f"{'cpu/dev':>8} {'max rel diff':>12}  status"  # fmt: skip
    lines = [header]
    tmp = Path(tempfile.mkdtemp(prefix="lineage-bench-gpu-"))
    for shape in args.shapes.split(","):
        if left() < 30:
            lines.append(f"{shape:<5} skipped: the budget ran out")
            continue
        ckpt = ensure_checkpoint(shape)
        files = checkpoint_files(ckpt)
        gb = sum(f.stat().st_size for f in files) / 1e9
        measure(read_command(files), left())  # warms the page cache
        read = measure(read_command(files), left()).wall_s
        cpu_fp, dev_fp = tmp / f"{shape}-cpu.fingerprint.safetensors", tmp / f"{shape}-dev.fingerprint.safetensors"
        cpu = measure([*in_process_command(ckpt, "cpu"), "--out", str(cpu_fp)], max(1.0, left()))
        dev = measure([*in_process_command(ckpt, args.device), "--out", str(dev_fp)], max(1.0, left()))
        if cpu.returncode or dev.returncode:
            bad = cpu if cpu.returncode else dev
            lines.append(f"{shape:<5} {gb:>6.2f} {read:>7.2f}  {bad.failure()}")
            continue
        cpu_s, dev_s = cpu.json()["fingerprint_s"], dev.json()["fingerprint_s"]
        diff = agreement(dev_fp, cpu_fp)
        status = "agree" if diff <= AGREEMENT else f"DISAGREE (> {AGREEMENT:g})"
        lines.append(f"{shape:<5} {gb:>6.2f} {read:>7.2f} {cpu_s:>7.2f} {dev_s:>8.2f} {dev_s / read:>7.2f}x "
                     f"{cpu_s / dev_s:>7.1f}x {diff:>12.2e}  {status}")  # fmt: skip
    suite = "not run (no CUDA device measured)" if not args.device.startswith("cuda") else "skipped: no budget left"
    if args.device.startswith("cuda") and left() > 20:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/"], cwd=BENCH.parent,
                              capture_output=True, text=True, timeout=max(1.0, left()))  # fmt: skip
        suite = (done.stdout.strip().splitlines() or ["no output"])[-1]
    print(f"device: {device_name}; host: {machine_line()}")
    print("fingerprint seconds in process (imports excluded), warm page cache; agreement promise 1e-4")
    print("\n".join(lines))
    print(f"pytest -m cuda (CPU/CUDA agreement on the real layouts): {suite}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
