"""How fast `lineage` starts and ends: the commands that must answer at once, and the cost of torch's teardown.

Each command runs as its own child process, `--repeat` times interleaved; the median wall time is printed
(`harness.measure`: the whole process, interpreter start and exit included). Rows:

- `lineage --version`, `lineage --help`, `lineage scan --help`, an unknown command: no heavy library may be
  imported (`tests/cli/test_startup.py` pins that); the goal is < 0.4 s;
- `python -c "import torch"`, ending normally, and the same ending with `os._exit(0)`: the difference is the
  interpreter's teardown of torch's modules, which `lineage.cli.app.main` skips once a command is done.

Usage:
    python bench/bench_startup.py [--repeat 5] [--lineage PATH]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from harness import machine_line, measure

GOAL_S = 0.4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; the median is printed (default: 5)")
    parser.add_argument("--lineage", default=shutil.which("lineage"), help="the lineage executable")
    args = parser.parse_args(argv)
    if not args.lineage:
        parser.error("no `lineage` on PATH: pip install -e . or give --lineage")
    rows = {
        "lineage --version": [args.lineage, "--version"],
        "lineage --help": [args.lineage, "--help"],
        "lineage scan --help": [args.lineage, "scan", "--help"],
        "lineage nope (a usage error)": [args.lineage, "nope"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'the same, ending with os._exit(0)': [sys.executable, "-c", "import os, torch; os._exit(0)"],
    }
    walls: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(args.repeat):
        for label, cmd in rows.items():
            walls[label].append(measure(cmd, 120).wall_s)
    print(f"machine: {machine_line()}; median of {args.repeat} whole-process runs")
    print(f"{'command':<40} {'median s':>9} {'min-max s':>12}")
    for label, runs in walls.items():
        runs.sort()
        median = runs[len(runs) // 2]
        goal = f"   goal < {GOAL_S} s: {'met' if median < GOAL_S else 'NOT met'}" if label.startswith("lineage") else ""
        print(f"{label:<40} {median:>9.3f} {runs[0]:>5.2f}-{runs[-1]:<5.2f}{goal}")
    torch_exit = sorted(walls['python -c "import torch"'])[args.repeat // 2]
    quick_exit = sorted(walls["the same, ending with os._exit(0)"])[args.repeat // 2]
    print(f"\ntorch's teardown at exit (the difference of the last two medians): {torch_exit - quick_exit:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
