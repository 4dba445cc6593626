"""Speed and memory of `lineage fingerprint`, next to reading the checkpoint once: where the time goes.

The yardstick is the cost of reading the checkpoint's bytes once from a warm page cache (row a): lineage's
goal is a fingerprint at the speed of the disk, so that a hub can be scanned on a small machine. Rows, each
its own child process, interleaved when repeated (medians reported):

- (a) read every byte once, 64 MB at a time;
- (b) `lineage fingerprint CKPT --no-cache --quiet --device D --out TMP`, end to end as a user runs it
  (interpreter start, imports, the fingerprint, the file written);
- (c) the same work inside one process, imports excluded (`bench/inprocess.py`): what each model of a scan
  costs once the process is up; the child also reports its import time;
- (d) TensorGuard's published recipe (`tensorguard_reference.py`), the system lineage replaces (1B only);
- (e) row (c) beside a competing CPU job the bench starts itself (`competitor.py`: a fixed 2-thread matrix
  product loop in its own process, stopped after the row): a hub machine is never quiet;
- (f), (g) with `--contrast`, rows (c) and (e) without lineage's thread policy (torch's own pools and
  OpenMP wait, as before `lineage.fingerprint.threads`): what the policy costs on a quiet machine and saves
  beside another job;
- (h) a batch of four copies of the checkpoint (hard links: no disk, one page cache) in one `lineage
  fingerprint` command, serial, seconds per model (`--no-cache`: the copies share size and modification
  time, so they share a cache key);
- (i) the same batch with `--executor process --jobs 2`, seconds per model.

Then one profiled in-process run gives the breakdown by stage (opening, anchors, read, convert, products,
profiles and statistics, other) and the **compute floor**: the very products the run made, timed again on
cache-hot data. The products are the fingerprint's irreducible work (most weights meet 76 probe rows, padded
to 80); the floor over the read is the best ratio this design allows on this machine.

Goals, set for the 1B shape on 2 CPU cores and judged only there (the first two for the OLMoE shape's mixture
of experts too): fingerprint <= 4x the warm read, peak RSS <= 600 MB; beside the competing job, in process
<= 2.5x the quiet row (c) of the same run (the competitor takes half the machine: 2x is the floor); `--jobs 2`
seconds per model <= 1.1x serial's.

Usage:
    python bench/bench_fingerprint.py [--shape 1b|7b|olmoe] [--repeat 3] [--device cpu] [--reference] [--contrast]
                                      [--no-competitor] [--no-batch] [--json F]
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
    Competitor,
    Row,
    checkpoint_files,
    copies,
    ensure_checkpoint,
    in_process_command,
    machine_line,
    measure,
    read_command,
)

GOAL_RATIO = 4.0
GOAL_RSS_MB = 600.0
GOAL_COMPETING = 2.5  # x the quiet in-process row
GOAL_JOBS = 1.1  # --jobs 2 seconds per model, x serial's
COPIES = 4
LABELS = {
    "read": "(a) read every byte once (64 MB chunks)",
    "cli": "(b) lineage fingerprint --device {device}, end to end",
    "inproc": "(c) the same in process (imports excluded)",
    "reference": "(d) TensorGuard reference --device {device}",
    "competing": "(e) (c) beside a competing 2-thread job",
    "quiet_before": "(f) (c) without lineage's thread policy",
    "contrast": "(g) (e) without lineage's thread policy",
    "serial": f"(h) {COPIES} copies in one command: s per model",
    "jobs": "(i) (h) with --executor process --jobs 2",
}
IN_PROCESS = ("inproc", "competing", "quiet_before", "contrast")  # the child's own fingerprint_s, not its wall time
PER_MODEL = ("serial", "jobs")  # wall time over the copies


def _lineage(exe: str | None) -> str | None:
    return exe or shutil.which("lineage") or next(
        (str(p) for p in [Path(sys.executable).parent / "lineage"] if p.is_file()), None
    )


def _value(key: str):  # noqa: ANN202 - a function of a Run
    if key in IN_PROCESS:
        return lambda r: r.json()["fingerprint_s"]
    if key in PER_MODEL:
        return lambda r: r.wall_s / COPIES
    return lambda r: r.wall_s


def render(rows: dict[str, Row], data_gb: float, profile: dict | None, goals: bool = True,
           competitor: list[str] | None = None) -> list[str]:  # fmt: skip
    """The table, the ratios against the read, the quiet row and serial, the breakdown and the floor, as
    text lines; `goals`: judge them against the goals (set for the 1B shape); `competitor`: the speeds the
    competing job printed."""
    lines = [f"{'row':<50} {'wall s':>8} {'peak RSS MB':>12} {'GB/s':>6}  status"]
    for key, row in rows.items():
        if not row.runs:
            lines.append(f"{row.label:<50} {'-':>8} {'-':>12} {'-':>6}  {row.note}")
            continue
        if not row.ok:
            lines.append(f"{row.label:<50} {'-':>8} {'-':>12} {'-':>6}  {row.runs[-1].failure()}")
            continue
        walls = sorted(_value(key)(r) for r in row.runs)
        wall = row.median(_value(key))
        status = f"ok (median of {len(walls)}: {walls[0]:.2f}-{walls[-1]:.2f} s)"
        rss = "-" if key in IN_PROCESS else f"{row.median(lambda r: r.peak_rss_mb):.0f}"
        lines.append(f"{row.label:<50} {wall:>8.2f} {rss:>12} {data_gb / wall:>6.2f}  {status}")
    read, cli, inproc = rows["read"], rows["cli"], rows["inproc"]
    lines.append("")
    if not read.ok:
        return [*lines, "no read row: no ratio"]

    def judge(ratio: float, goal: float) -> str:
        return f"goal <= {goal:g}x: {'met' if ratio <= goal else 'NOT met'}; " if goals else ""

    read_s = read.median()
    if cli.ok:
        rss = cli.median(lambda r: r.peak_rss_mb)
        goal = f" (goal <= {GOAL_RSS_MB:.0f} MB: {'met' if rss <= GOAL_RSS_MB else 'NOT met'})" if goals else ""
        lines.append(f"fingerprint / read, end to end:  {cli.median() / read_s:5.2f}x   peak RSS {rss:.0f} MB{goal}")
    if inproc.ok:
        fp_s = inproc.median(_value("inproc"))
        import_s = inproc.median(lambda r: r.json()["import_s"])
        lines.append(f"fingerprint / read, in process:  {fp_s / read_s:5.2f}x   ({judge(fp_s / read_s, GOAL_RATIO)}"
                     f"imports excluded: {import_s:.2f} s of torch and lineage before any model)")  # fmt: skip
        lines.append(f"threads in process: {inproc.runs[-1].json()['threads']}; pools after the run: "
                     f"{inproc.runs[-1].json()['pools']}")  # fmt: skip
        pairs = (("competing", "beside the competing job"), ("quiet_before", "quiet, without the policy"),
                 ("contrast", "beside it, without the policy"))  # fmt: skip
        for key, what in pairs:
            if rows[key].ok:
                ratio = rows[key].median(_value(key)) / fp_s
                goal = judge(ratio, GOAL_COMPETING) if key == "competing" else ""
                lines.append(f"{what + ', in process:':<34}{ratio:5.2f}x the quiet row (c)   ({goal}"
                             f"{rows[key].median(_value(key)):.2f} s against {fp_s:.2f} s)")  # fmt: skip
        if competitor:
            lines.append(f"the competing job, as it reported each time: {'; '.join(competitor)}")
        if cli.ok:
            lines.append(f"one model, end to end: {cli.median():.2f} s = {fp_s:.2f} s of fingerprint + "
                         f"{cli.median() - fp_s:.2f} s of interpreter start, imports ({import_s:.2f} s: torch and "
                         "lineage) and the file written:")  # fmt: skip
            lines.append("  a command pays its imports once, whatever its models; a scan of many models, once for all")
    serial, jobs = rows["serial"], rows["jobs"]
    if serial.ok:
        per = serial.median(_value("serial"))
        lines.append(f"{COPIES} copies in one command, serial: {per:.2f} s per model ({per / read_s:.2f}x the read): "
                     "torch imported once for all of them")  # fmt: skip
        if jobs.ok:
            ratio = jobs.median(_value("jobs")) / per
            lines.append(f"--executor process --jobs 2:            {ratio:5.2f}x serial's seconds per model   "
                         f"({judge(ratio, GOAL_JOBS)}{jobs.median(_value('jobs')):.2f} s; each worker imports "
                         "torch once and runs its share of the threads)")  # fmt: skip
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
    parser.add_argument("--shape", choices=("1b", "7b", "olmoe"), default="1b", help="checkpoint layout (default: 1b)")
    parser.add_argument("--ckpt", type=Path, default=None, help="measure this checkpoint folder instead")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; medians are reported (default: 3)")
    parser.add_argument("--device", default="cpu", help="--device for lineage (default: cpu)")
    parser.add_argument("--reference", action="store_true", help="add TensorGuard's recipe (1B: ~4 min, ~9.5 GB)")
    parser.add_argument("--contrast", action="store_true", help="add rows (c), (e) without lineage's thread policy")
    parser.add_argument("--no-competitor", action="store_true", help="leave out the row beside a competing job")
    parser.add_argument("--no-batch", action="store_true", help=f"leave out the rows of {COPIES} copies")
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
    no_exe = "" if exe else "no `lineage` script"
    notes = {
        "cli": no_exe,
        "reference": "" if args.reference else "not asked (--reference)",
        "competing": "" if not args.no_competitor else "not asked (--no-competitor)",
        "quiet_before": "" if args.contrast else "not asked (--contrast)",
        "contrast": "" if args.contrast and not args.no_competitor else "not asked (--contrast)",
        "serial": no_exe or ("not asked (--no-batch)" if args.no_batch else ""),
        "jobs": no_exe or ("not asked (--no-batch)" if args.no_batch else ""),
    }
    rows = {key: Row(label.format(device=args.device), note=notes.get(key, "")) for key, label in LABELS.items()}
    batch = None if args.no_batch or not exe else copies(ckpt, COPIES, ckpt.parent / f"{ckpt.name}-x{COPIES}")
    competitor: list[str] = []
    out = Path(tempfile.mkdtemp(prefix="lineage-bench-out-"))
    try:
        for i in range(args.repeat):
            print(f"repeat {i + 1}/{args.repeat}", file=sys.stderr)
            rows["read"].runs.append(measure(read_command(files), args.timeout))
            lineage = [exe, "fingerprint", "--device", args.device, "--no-cache", "--quiet"]
            if exe:
                rows["cli"].runs.append(measure([*lineage, str(ckpt), "--out", str(out / f"run-{i}")], args.timeout))
            rows["inproc"].runs.append(measure(in_process_command(ckpt, args.device), args.timeout))
            if args.contrast:
                cmd = in_process_command(ckpt, args.device, policy=False)
                rows["quiet_before"].runs.append(measure(cmd, args.timeout))
            if args.reference:
                cmd = [sys.executable, str(BENCH / "tensorguard_reference.py"), str(ckpt), "--device", args.device]
                rows["reference"].runs.append(measure(cmd, args.timeout))
            if not args.no_competitor:
                for key, policy in (("competing", True), ("contrast", False)):
                    if key == "contrast" and not args.contrast:
                        continue
                    cmd = in_process_command(ckpt, args.device, policy=policy)
                    with Competitor() as job:
                        rows[key].runs.append(measure(cmd, args.timeout))
                    competitor.append(f"{job.speed} ({key})")
            if batch:
                folder = str(batch[0].parent)
                cmd = [*lineage, folder, "--out", str(out / f"serial-{i}")]
                rows["serial"].runs.append(measure(cmd, args.timeout))
                cmd = [*lineage, folder, "--out", str(out / f"jobs-{i}"), "--executor", "process", "--jobs", "2"]
                rows["jobs"].runs.append(measure(cmd, args.timeout))
        profiled = None if args.no_profile else measure(in_process_command(ckpt, args.device, True), args.timeout)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    profile = profiled.json() if profiled is not None and profiled.returncode == 0 else None
    print(f"checkpoint: {ckpt} ({len(files)} files, {data_gb:.2f} GB)")
    print(f"machine: {machine_line()}")
    print(f"first read (page cache not dropped; information only): {first.wall_s:.2f} s; every row below is "
          "measured against the warm cache it leaves")  # fmt: skip
    print()
    goals = args.shape in ("1b", "olmoe") and args.ckpt is None
    print("\n".join(render(rows, data_gb, profile, goals=goals, competitor=competitor)))
    if args.json:
        doc = {
            "checkpoint": str(ckpt),
            "data_gb": data_gb,
            "rows": [{"label": r.label, "note": r.note, "wall_s": [x.wall_s for x in r.runs],
                      "peak_rss_mb": [x.peak_rss_mb for x in r.runs], "stdout": [x.stdout[-2000:] for x in r.runs]}
                     for r in rows.values()],  # fmt: skip
            "competitor": competitor,
            "profile": profile,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
