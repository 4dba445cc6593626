"""Speed and memory of `lineage fingerprint`, next to reading the checkpoint once and to TensorGuard's recipe.

What is measured, and why: lineage's goal is a fingerprint "at the speed of reading the file", so that a hub
can be scanned on a small machine. The yardstick is therefore not another fingerprinter but the cost of
reading the checkpoint's bytes once: row (a) reads every shard fully in 64 MB chunks, nothing more. Row (b)
is `lineage fingerprint <ckpt> --out <dir> --device <device>`; row (c) is TensorGuard's published recipe
(`tensorguard_reference.py`), the system lineage replaces. Each row is a separate child process, timed by
wall clock and measured for peak resident memory, so no row inherits another's imports, allocations or
caches. The goals are: fingerprint wall time <= 1.5x the read, and peak RSS < 1 GB.

Conditions, kept the same for every row: the checkpoint is a random bf16 copy of Llama-3.2-1B's layout
(`make_checkpoint.py`, 2.47 GB in 3 shards). Nothing is dropped from the page cache; the first read is
timed and printed for information ("cold-ish": the cache holds whatever it held before, e.g. the freshly
written checkpoint), and it warms the cache, so all rows are measured against a warm cache, i.e. the
speed of the code and not of the disk. With `--repeat N` the rows run interleaved N times and medians are
reported.

Peak RSS is the kernel's `ru_maxrss` of each child, read from `/usr/bin/time -v` when present, else from
`os.wait4` on the child; both are exact high-water marks (no sampling), unlike `getrusage(RUSAGE_CHILDREN)`
deltas, which keep the maximum over all children and so cannot tell sequential children apart. RSS counts
file pages mapped into the process: a reader that mmaps the whole checkpoint and touches it shows it in
its RSS, even though the kernel could drop those pages.

Usage:
    python bench/bench_fingerprint.py [--repeat 3] [--skip-reference] [--device cpu] [--out DIR] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DEFAULT_CKPT = BENCH / "out" / "llama-3.2-1b-shape"
TIME_BIN = "/usr/bin/time"
GOAL_RATIO = 1.5
GOAL_RSS_MB = 1000.0  # "< 1 GB"; MB and GB are decimal here, as in GB/s
GOAL_LINE = "goal: fingerprint <= 1.5x read; peak RSS < 1 GB"

# Row (a): read every shard fully into one reused 64 MB buffer, unbuffered, so the cost is the kernel's
# copy out of the page cache and nothing else (no allocation per chunk, no parsing).
READ_CODE = """
import sys
view = memoryview(bytearray(64 << 20))
total = 0
for path in sys.argv[1:]:
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
print(total)
"""


@dataclass
class Run:
    """One measured child process."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Row:
    """One line of the table: its runs, or why it has none."""

    label: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.returncode == 0 for r in self.runs)

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def peak_rss_mb(self) -> float:
        return statistics.median(r.peak_rss_mb for r in self.runs)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def measure(cmd: list[str], timeout_s: float) -> Run:
    """Run `cmd` as a child; return its wall time and peak RSS.

    Args:
        cmd: the command line.
        timeout_s: kill the child (and its process group) after this many seconds.

    Returns:
        A `Run`; a killed child has a negative return code and a note in `stderr`.
    """
    use_time = os.access(TIME_BIN, os.X_OK)
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as tmp:
        tmp_dir = Path(tmp)
        rusage_file = tmp_dir / "time.txt"
        full = [TIME_BIN, "-v", "-o", str(rusage_file), *cmd] if use_time else cmd
        # Output goes to files, not pipes: a child that prints a lot can then never block on a full pipe.
        with (tmp_dir / "out").open("w+") as out, (tmp_dir / "err").open("w+") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, stdout=out, stderr=err, start_new_session=True)
            timer = threading.Timer(timeout_s, _kill_group, args=(proc,))
            timer.start()
            # wait4, not Popen.wait: it also returns the child's rusage, whose ru_maxrss is the exact peak RSS
            # of the child and of the descendants it reaped (for `time`, that is the measured command).
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            timer.cancel()
            timed_out = wall >= timeout_s
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        maxrss_kb = usage.ru_maxrss
        if use_time and rusage_file.is_file():
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rusage_file.read_text())
            if match:
                maxrss_kb = int(match.group(1))  # the command's own figure, as /usr/bin/time -v prints it
    if timed_out and proc.returncode != 0:
        stderr += f"\nkilled after {timeout_s:.0f} s (--timeout)"
    return Run(
        wall_s=wall, peak_rss_mb=maxrss_kb * 1024 / 1e6, returncode=proc.returncode, stdout=stdout, stderr=stderr
    )


def checkpoint_files(ckpt: Path) -> list[Path]:
    """The shard files of a checkpoint folder (from its index, else every `*.safetensors`), or the file itself."""
    if ckpt.is_file():
        return [ckpt]
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        return [ckpt / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return sorted(ckpt.glob("*.safetensors"))


def ensure_checkpoint(ckpt: Path) -> None:
    """Write the benchmark checkpoint at `ckpt` unless a checkpoint is already there (the default is re-checked)."""
    if ckpt.resolve() != DEFAULT_CKPT.resolve() and checkpoint_files(ckpt):
        return  # a checkpoint of the user's own: measure it as it is
    print(f"checking / writing the benchmark checkpoint at {ckpt} ...", file=sys.stderr)
    # Its stdout (the folder's path) goes to our stderr, so that our stdout holds only the results.
    subprocess.run(
        [sys.executable, str(BENCH / "make_checkpoint.py"), "--out", str(ckpt)], check=True, stdout=sys.stderr
    )


def lineage_command(exe: str | None = None) -> tuple[str | None, str]:
    """Find the `lineage` console script and check that it has a `fingerprint` command.

    Args:
        exe: the executable to use; default: `lineage` on PATH, else next to this Python.

    Returns:
        `(path, "")` when usable, else `(None, reason)`.
    """
    exe = exe or shutil.which("lineage")
    if exe is None:
        beside = Path(sys.executable).parent / "lineage"
        exe = str(beside) if beside.is_file() else None
    if exe is None:
        return None, "no `lineage` console script (run `pip install -e .` in the repository)"
    try:
        probe = subprocess.run([exe, "fingerprint", "--help"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "`lineage fingerprint --help` did not answer in 300 s"
    if probe.returncode != 0:
        last = (probe.stderr.strip() or probe.stdout.strip() or "no output").splitlines()[-1]
        return None, f"`lineage fingerprint --help` failed: {last[:120]}"
    return exe, ""


def _first_line_of_failure(run: Run) -> str:
    lines = (run.stderr.strip() or run.stdout.strip() or "no output").splitlines()
    return f"failed (rc={run.returncode}): {lines[-1][:100]}"


def _ratio(num: Row, den: Row, attr: str) -> float | None:
    if not (num.ok and den.ok):
        return None
    d = getattr(den, attr)
    return getattr(num, attr) / d if d > 0 else None


def render(rows: list[Row], data_gb: float, repeat: int) -> list[str]:
    """The table, ratios and goal lines, as text lines."""
    lines = [f"{'row':<44} {'wall s':>9} {'peak RSS MB':>12} {'GB/s':>7}  status"]
    for row in rows:
        if not row.runs:
            lines.append(f"{row.label:<44} {'-':>9} {'-':>12} {'-':>7}  {row.note}")
            continue
        status = "ok" if row.ok else _first_line_of_failure(next(r for r in row.runs if r.returncode != 0))
        if row.ok and repeat > 1:
            walls = [r.wall_s for r in row.runs]
            status += f" (median of {repeat}; wall {min(walls):.2f}-{max(walls):.2f} s)"
        rate = f"{data_gb / row.wall_s:.2f}" if row.ok else "-"
        lines.append(f"{row.label:<44} {row.wall_s:>9.2f} {row.peak_rss_mb:>12.0f} {rate:>7}  {status}")
    read, fp, ref = rows
    lines.append("")
    fp_read = _ratio(fp, read, "wall_s")
    if fp_read is None:
        lines.append("fingerprint / read:      n/a (fingerprint row has no result)")
    else:
        met = fp_read <= GOAL_RATIO and fp.peak_rss_mb < GOAL_RSS_MB
        lines.append(
            f"fingerprint / read:      {fp_read:.2f}x wall time  -> goal {'MET' if met else 'NOT MET'}"
            f" ({fp_read:.2f}x read, {fp.peak_rss_mb:.0f} MB peak RSS)"
        )
    ref_fp_t, ref_fp_m = _ratio(ref, fp, "wall_s"), _ratio(ref, fp, "peak_rss_mb")
    if ref_fp_t is None:
        lines.append("reference / fingerprint: n/a (needs both rows)")
    else:
        lines.append(f"reference / fingerprint: {ref_fp_t:.1f}x wall time, {ref_fp_m:.1f}x peak RSS")
    lines.append(GOAL_LINE)
    return lines


def _mem_total_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return kb * 1024 / 1e9
    except (OSError, StopIteration, ValueError):
        return float("nan")


def _results(args: argparse.Namespace, data_bytes: int, first: Run, rows: list[Row]) -> dict:
    return {
        "checkpoint": str(args.ckpt),
        "data_bytes": data_bytes,
        "repeat": args.repeat,
        "device": args.device,
        "first_read_s": first.wall_s,
        "rows": [
            {
                "label": r.label,
                "ok": r.ok,
                "note": r.note,
                "wall_s": [x.wall_s for x in r.runs],
                "peak_rss_mb": [x.peak_rss_mb for x in r.runs],
                "returncode": [x.returncode for x in r.runs],
            }
            for r in rows
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt",
        type=Path,
        default=DEFAULT_CKPT,
        help="checkpoint folder; the random Llama-3.2-1B-shaped one is written there if absent (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; medians are reported (default: 1)")
    parser.add_argument("--skip-reference", action="store_true", help="leave out the TensorGuard row (~3-4 min)")
    parser.add_argument("--device", default="cpu", help="--device for lineage and the reference (default: cpu)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for lineage's output files (default: a temporary folder, removed after)",
    )
    parser.add_argument("--lineage", default=None, help="the lineage executable (default: `lineage` on PATH)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a row's run is killed")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    ensure_checkpoint(args.ckpt)
    files = checkpoint_files(args.ckpt)
    if not files:
        parser.error(f"no *.safetensors under {args.ckpt}")
    data_bytes = sum(f.stat().st_size for f in files)
    data_gb = data_bytes / 1e9
    read_cmd = [sys.executable, "-c", READ_CODE, *map(str, files)]

    # The first read is timed for information only; it also warms the page cache for every measured row.
    first = measure(read_cmd, args.timeout)

    exe, why_not = lineage_command(args.lineage)
    out_root = args.out or Path(tempfile.mkdtemp(prefix="lineage-bench-out-"))
    rows = [
        Row("(a) read every byte once (64 MB chunks)"),
        Row(f"(b) lineage fingerprint --device {args.device}", note=f"not available: {why_not}" if why_not else ""),
        Row(
            f"(c) TensorGuard reference --device {args.device}",
            note="skipped (--skip-reference)" if args.skip_reference else "",
        ),
    ]
    try:
        for i in range(args.repeat):
            print(f"repeat {i + 1}/{args.repeat}: read", file=sys.stderr)
            rows[0].runs.append(measure(read_cmd, args.timeout))
            if exe:
                print(f"repeat {i + 1}/{args.repeat}: lineage fingerprint", file=sys.stderr)
                out_dir = out_root / f"run-{i + 1}"
                fp_cmd = [exe, "fingerprint", str(args.ckpt), "--out", str(out_dir), "--device", args.device]
                rows[1].runs.append(measure(fp_cmd, args.timeout))
            if not args.skip_reference:
                print(f"repeat {i + 1}/{args.repeat}: TensorGuard reference", file=sys.stderr)
                ref_cmd = [
                    sys.executable,
                    str(BENCH / "tensorguard_reference.py"),
                    str(args.ckpt),
                    "--device",
                    args.device,
                ]
                rows[2].runs.append(measure(ref_cmd, args.timeout))
    finally:
        if args.out is None:
            shutil.rmtree(out_root, ignore_errors=True)

    how = f"{TIME_BIN} -v" if os.access(TIME_BIN, os.X_OK) else "os.wait4 rusage"
    print(f"checkpoint: {args.ckpt} ({len(files)} files, {data_gb:.2f} GB)")
    print(
        f"machine: {os.cpu_count()} CPUs, {_mem_total_gb():.1f} GB RAM; python {sys.version.split()[0]}; "
        f"peak RSS from {how}"
    )
    print(
        f"first read (cold-ish, page cache not dropped; information only): {first.wall_s:.2f} s, "
        f"{data_gb / first.wall_s:.2f} GB/s"
    )
    print(
        f"that read warmed the page cache: every row below is measured against a warm cache"
        f"{f' (median of {args.repeat})' if args.repeat > 1 else ''}"
    )
    print()
    for line in render(rows, data_gb, args.repeat):
        print(line)

    if args.json:
        args.json.write_text(json.dumps(_results(args, data_bytes, first, rows), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
