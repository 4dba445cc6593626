"""Speed and memory of `lineage fingerprint`, next to reading the checkpoint once: where the time goes.

The yardstick is the cost of reading the checkpoint's bytes once from a warm page cache (row a): lineage's
goal is a fingerprint at the speed of the disk, so that a hub can be scanned on a small machine. Rows, each
its own child process, interleaved when repeated (medians reported):

- (a) read every byte once, 64 MB at a time;
- (b) `lineage fingerprint CKPT --no-cache --quiet --device D --out TMP`, end to end as a user runs it
  (interpreter start, imports, the fingerprint, the file written);
- (c) the same work inside one process, imports excluded (`bench/inprocess.py`): what each model of a scan
  costs once the process is up; the child also reports its import time;
- (d) TensorGuard's published recipe (`tensorguard_reference.py`), the system lineage replaces (1B only).

Then one profiled in-process run gives the breakdown by stage (opening, anchors, read, convert, products,
profiles and statistics, other) and the **compute floor**: the very products the run made, timed again on
cache-hot data. The products are the fingerprint's irreducible work (most weights meet 76 probe rows, padded
to 80); the floor over the read is the best ratio this design allows on this machine.

Goals, set for the 1B shape on 2 CPU cores and judged only there: fingerprint <= 4x the warm read, peak RSS
<= 600 MB.

Usage:
    python bench/bench_fingerprint.py [--shape 1b|7b] [--repeat 3] [--device cpu] [--reference] [--json F]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from harness import (
    BENCH,
    Row,
    checkpoint_files,
    ensure_checkpoint,
    in_process_command,
    machine_line,
    measure,
    read_command,
)

GOAL_RATIO = 4.0
GOAL_RSS_MB = 600.0


def _lineage(exe: str | None) -> str | None:
    return exe or shutil.which("lineage") or next(
        (str(p) for p in [Path(sys.executable).parent / "lineage"] if p.is_file()), None
    )


def render(rows: list[Row], data_gb: float, profile: dict | None, goals: bool = True) -> list[str]:
    """The table, the ratios against the read, the breakdown and the floor, as text lines; `goals`: judge the
    ratio and the memory against the goals (set for the 1B shape)."""
    lines = [f"{'row':<50} {'wall s':>8} {'peak RSS MB':>12} {'GB/s':>6}  status"]
    for row in rows:
        if not row.runs:
            lines.append(f"{row.label:<50} {'-':>8} {'-':>12} {'-':>6}  {row.note}")
            continue
        if not row.ok:
            lines.append(f"{row.label:<50} {'-':>8} {'-':>12} {'-':>6}  {row.runs[-1].failure()}")
            continue
        value = (lambda r: r.json()["fingerprint_s"]) if row.label.startswith("(c)") else (lambda r: r.wall_s)
        walls = sorted(value(r) for r in row.runs)
        wall = row.median(value)
        status = f"ok (median of {len(walls)}: {walls[0]:.2f}-{walls[-1]:.2f} s)"
        rss = "-" if row.label.startswith("(c)") else f"{row.median(lambda r: r.peak_rss_mb):.0f}"
        lines.append(f"{row.label:<50} {wall:>8.2f} {rss:>12} {data_gb / wall:>6.2f}  {status}")
    read, cli, inproc = rows[0], rows[1], rows[2]
    lines.append("")
    if not read.ok:
        return [*lines, "no read row: no ratio"]
    read_s = read.median()
    if cli.ok:
        rss = cli.median(lambda r: r.peak_rss_mb)
        goal = f" (goal <= {GOAL_RSS_MB:.0f} MB: {'met' if rss <= GOAL_RSS_MB else 'NOT met'})" if goals else ""
        lines.append(f"fingerprint / read, end to end:  {cli.median() / read_s:5.2f}x   peak RSS {rss:.0f} MB{goal}")
    if inproc.ok:
        fp_s = inproc.median(lambda r: r.json()["fingerprint_s"])
        import_s = inproc.median(lambda r: r.json()["import_s"])
        ratio = fp_s / read_s
        goal = f"goal <= {GOAL_RATIO:g}x: {'met' if ratio <= GOAL_RATIO else 'NOT met'}; " if goals else ""
        lines.append(f"fingerprint / read, in process:  {ratio:5.2f}x   ({goal}imports excluded: {import_s:.2f} s of "
                     "torch and lineage before any model)")  # fmt: skip
    if profile:
        total = profile["profiled_s"]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in profile["breakdown"].items())
        lines.append(f"breakdown of one profiled run ({total:.2f} s), seconds: import {profile['import_s']:.2f} | "
                     f"{parts} | write {profile['write_s']:.3f}")  # fmt: skip
        floor = profile["floor_s"]
        lines.append(f"compute floor: the run's products, {profile['products_gflop']:.0f} GFLOP, take {floor:.2f} s "
                     f"on cache-hot data ({profile['products_gflop'] / floor:.0f} GFLOP/s) = {floor / read_s:.2f}x "
                     f"the read; in the run they took {profile['breakdown']['products']:.2f} s")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("1b", "7b"), default="1b", help="checkpoint layout (default: 1b)")
    parser.add_argument("--ckpt", type=Path, default=None, help="measure this checkpoint folder instead")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; medians are reported (default: 3)")
    parser.add_argument("--device", default="cpu", help="--device for lineage (default: cpu)")
    parser.add_argument("--reference", action="store_true", help="add TensorGuard's recipe (1B: ~4 min, ~9.5 GB)")
    parser.add_argument("--no-profile", action="store_true", help="leave out the breakdown and the floor")
    parser.add_argument("--lineage", default=None, help="the lineage executable (default: `lineage` on PATH)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run is killed")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    ckpt = ensure_checkpoint(args.shape, args.ckpt)
    files = checkpoint_files(ckpt)
    data_gb = sum(f.stat().st_size for f in files) / 1e9
    first = measure(read_command(files), args.timeout)  # warms the page cache; information only
    exe = _lineage(args.lineage)
    reference_note = "" if args.reference else "not asked (--reference)"
    rows = [
        Row("(a) read every byte once (64 MB chunks)"),
        Row(f"(b) lineage fingerprint --device {args.device}, end to end", note="" if exe else "no `lineage` script"),
        Row("(c) the same in process (imports excluded)"),
        Row(f"(d) TensorGuard reference --device {args.device}", note=reference_note),
    ]
    out = Path(tempfile.mkdtemp(prefix="lineage-bench-out-"))
    try:
        for i in range(args.repeat):
            print(f"repeat {i + 1}/{args.repeat}", file=sys.stderr)
            rows[0].runs.append(measure(read_command(files), args.timeout))
            if exe:
                cmd = [exe, "fingerprint", str(ckpt), "--out", str(out / f"run-{i}"), "--device", args.device,
                       "--no-cache", "--quiet"]  # fmt: skip
                rows[1].runs.append(measure(cmd, args.timeout))
            rows[2].runs.append(measure(in_process_command(ckpt, args.device), args.timeout))
            if args.reference:
                cmd = [sys.executable, str(BENCH / "tensorguard_reference.py"), str(ckpt), "--device", args.device]
                rows[3].runs.append(measure(cmd, args.timeout))
        profiled = None if args.no_profile else measure(in_process_command(ckpt, args.device, True), args.timeout)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    profile = profiled.json() if profiled is not None and profiled.returncode == 0 else None
    print(f"checkpoint: {ckpt} ({len(files)} files, {data_gb:.2f} GB)")
    print(f"machine: {machine_line()}")
    print(f"first read (page cache not dropped; information only): {first.wall_s:.2f} s; every row below is "
          "measured against the warm cache it leaves")  # fmt: skip
    print()
    print("\n".join(render(rows, data_gb, profile, goals=args.shape == "1b" and args.ckpt is None)))
    if args.json:
        doc = {
            "checkpoint": str(ckpt),
            "data_gb": data_gb,
            "rows": [{"label": r.label, "note": r.note, "wall_s": [x.wall_s for x in r.runs],
                      "peak_rss_mb": [x.peak_rss_mb for x in r.runs], "stdout": [x.stdout[-2000:] for x in r.runs]}
                     for r in rows],  # fmt: skip
            "profile": profile,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
