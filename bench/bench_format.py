"""What the fingerprint format's growth costs: fingerprint time and file size, this tree against an older one.

The sign-carrying identity responses of the weight test (pipeline 6) made the fingerprint larger and its
products wider. This bench fingerprints the same checkpoints with this working tree and with an older commit
(checked out into a temporary git worktree), each in its own child process after a warm-up run, interleaved,
and prints the median wall time of the fingerprinting call (imports excluded) and the size of the written
file. The goal the change was held to: fingerprint time <= 2x the older pipeline's.

Usage:
    python bench/bench_format.py [--ref 4ff9357] [--repeat 3] [MODEL ...]

With no MODEL, the real SmolLM2-135M-Instruct (as the tests convert it, `.lineage/test-models/`) and, when
`bench/make_checkpoint.py` has written it, the Llama-3.2-1B-shaped checkpoint (`bench/out/`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REF = "4ff9357"  # the last commit before the identity responses
GOAL = 2.0
CHILD = """
import json, sys, time, torch
torch.set_num_threads({threads})
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.fingerprint.format import save_fingerprint
t = time.perf_counter()
fp = fingerprint_model(sys.argv[1], FingerprintOptions(device="cpu"))
seconds = time.perf_counter() - t
path = save_fingerprint(fp, sys.argv[2])
print(json.dumps({{"seconds": seconds, "bytes": path.stat().st_size}}))
"""


def _default_models() -> list[Path]:
    found = sorted((ROOT / ".lineage" / "test-models").glob("smollm2-hf-*"))
    shaped = ROOT / "bench" / "out" / "llama-3.2-1b-shape"
    return [*found[:1], *([shaped] if shaped.is_dir() else [])]


def _run(tree: Path, model: Path, out: Path, threads: int) -> dict:
    code = CHILD.format(threads=threads)
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the tree's package first, whatever is installed
    done = subprocess.run([sys.executable, "-c", code, str(model), str(out)], capture_output=True, text=True,
                          check=True, cwd=tree, env=env)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--ref", default=DEFAULT_REF, help="the older commit to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    models = args.models or _default_models()
    if not models:
        raise SystemExit("no model: give one, or run the tests once (they convert SmolLM2 into .lineage/)")
    with tempfile.TemporaryDirectory(prefix="lineage-bench-format-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.ref], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            print(f"{'model':<28} {'tree':<10} {'median s':>9} {'size MB':>8}")
            for model in models:
                rows = {}
                for name, tree in (("old " + args.ref[:7], old), ("this tree", ROOT)):
                    _run(tree, model, Path(tmp) / "warm.fp", args.threads)  # warm the page cache and imports
                for _ in range(args.repeat):
                    for name, tree in (("old " + args.ref[:7], old), ("this tree", ROOT)):
                        r = _run(tree, model, Path(tmp) / f"{name[:3]}.fingerprint.safetensors", args.threads)
                        rows.setdefault(name, []).append(r)
                for name, runs in rows.items():
                    seconds = statistics.median(r["seconds"] for r in runs)
                    print(f"{model.name[:28]:<28} {name:<10} {seconds:>9.2f} {runs[-1]['bytes'] / 1e6:>8.2f}")
                old_s, new_s = (statistics.median(r["seconds"] for r in runs) for runs in rows.values())
                print(f"{'':<28} ratio {new_s / old_s:.2f}x (goal <= {GOAL:g}x)")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)


if __name__ == "__main__":
    main()
