"""What the speed benches share: child processes timed with their peak memory, the warm read, the checkpoints.

Every measured row is its own child process, so no row inherits another's imports, allocations or caches.
Wall time is the parent's clock around the child; peak RSS is the child's `ru_maxrss` (from
`/usr/bin/time -v` when installed, else `os.wait4`), an exact high-water mark that counts mapped file pages.
"""

from __future__ import annotations

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
TIME_BIN = "/usr/bin/time"
SHAPE_FOLDERS = {
    "1b": BENCH / "out" / "llama-3.2-1b-shape",
    "7b": BENCH / "out" / "llama-2-7b-shape",
    "olmoe": BENCH / "out" / "olmoe-1b-7b-shape",
}

# The floor: read every shard fully into one reused 64 MB buffer, unbuffered, so the cost is the kernel's copy
# out of the page cache and nothing else (no allocation per chunk, no parsing).
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

    def json(self) -> dict:
        """The child's last stdout line as JSON (the in-process children print one object)."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def failure(self) -> str:
        lines = (self.stderr.strip() or self.stdout.strip() or "no output").splitlines()
        return f"failed (rc={self.returncode}): {lines[-1][:100]}"


@dataclass
class Row:
    """One line of a table: its runs, or why it has none."""

    label: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and all(r.returncode == 0 for r in self.runs)

    def median(self, value=lambda r: r.wall_s) -> float:  # noqa: ANN001 - a function of a Run
        return statistics.median(value(r) for r in self.runs)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def measure(cmd: list[str], timeout_s: float = 1800) -> Run:
    """Run `cmd` as a child; return its wall time, peak RSS and output (a killed child: negative code)."""
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
            # wait4, not Popen.wait: it also returns the child's rusage, whose ru_maxrss is the exact peak RSS.
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            timer.cancel()
            code = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        maxrss_kb = usage.ru_maxrss
        if use_time and rusage_file.is_file():
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", rusage_file.read_text())
            if match:
                maxrss_kb = int(match.group(1))  # the command's own figure, as /usr/bin/time -v prints it
    if wall >= timeout_s and code != 0:
        stderr += f"\nkilled after {timeout_s:.0f} s"
    return Run(wall, maxrss_kb * 1024 / 1e6, code, stdout, stderr)


def checkpoint_files(ckpt: Path) -> list[Path]:
    """The shard files of a checkpoint folder (from its index, else every `*.safetensors`), or the file itself."""
    if ckpt.is_file():
        return [ckpt]
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        return [ckpt / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return sorted(ckpt.glob("*.safetensors"))


def ensure_checkpoint(shape: str, ckpt: Path | None = None) -> Path:
    """The benchmark checkpoint of `shape` (`1b`, `7b`), written by `make_checkpoint.py` when absent; a
    checkpoint of the user's own (`ckpt`) is measured as it is."""
    if ckpt is not None and ckpt.resolve() != SHAPE_FOLDERS[shape].resolve() and checkpoint_files(ckpt):
        return ckpt
    folder = ckpt or SHAPE_FOLDERS[shape]
    print(f"checking / writing the {shape} benchmark checkpoint at {folder} ...", file=sys.stderr)
    cmd = [sys.executable, str(BENCH / "make_checkpoint.py"), "--shape", shape, "--out", str(folder)]
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # its stdout (the folder) must not mix with results
    return folder


def read_command(files: list[Path]) -> list[str]:
    return [sys.executable, "-c", READ_CODE, *map(str, files)]


def in_process_command(ckpt: Path, device: str, profile: bool = False, policy: bool = True) -> list[str]:
    """`bench/inprocess.py`: import, fingerprint and write times inside one child (and the breakdown);
    `policy=False`: without lineage's thread policy (torch's own pools and wait)."""
    flags = [*(["--profile"] * profile), *(["--no-policy"] * (not policy))]
    return [sys.executable, str(BENCH / "inprocess.py"), str(ckpt), "--device", device, *flags]


class Competitor:
    """`bench/competitor.py` (a 2-thread matrix product loop) running for the duration of a `with` block.

    Entering waits until its first product is done; leaving stops it (SIGTERM, then SIGKILL) and keeps the
    speed it printed in `speed` ("123.4 GFLOP/s over 5.0 s").
    """

    def __init__(self, threads: int = 2) -> None:
        self.threads, self.speed, self.proc = threads, "", None

    def __enter__(self) -> Competitor:
        cmd = [sys.executable, str(BENCH / "competitor.py"), "--threads", str(self.threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()  # "ready": it competes from now on
        if line.strip() != "ready":
            self.__exit__()
            raise RuntimeError(f"the competing job did not start: {line.strip() or 'no output'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            out, _ = self.proc.communicate()
        self.speed = (out or "").strip().splitlines()[-1] if (out or "").strip() else "no speed printed"


def copies(ckpt: Path, count: int, folder: Path) -> list[Path]:
    """`count` copies of checkpoint folder `ckpt` under `folder` (`copy-1` ...), as hard links to its files.

    Hard links cost no disk and share the page cache, so every copy reads as warm as the original. They
    also share size and modification time, which the fingerprint cache key is made of: measure them with
    `--no-cache`, or the second copy is a cache hit. Where links are refused, the files are copied.
    """
    out = []
    for i in range(1, count + 1):
        dest = folder / f"copy-{i}"
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted(p for p in ckpt.iterdir() if p.is_file()):
            target = dest / src.name
            if target.exists() and target.stat().st_size == src.stat().st_size:
                continue
            target.unlink(missing_ok=True)
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
        out.append(dest)
    return out


def machine_line() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        ram = f"{kb * 1024 / 1e9:.1f} GB RAM"
    except (OSError, StopIteration, ValueError):
        ram = "RAM unknown"
    how = f"{TIME_BIN} -v" if os.access(TIME_BIN, os.X_OK) else "os.wait4 rusage"
    return f"{os.cpu_count()} CPUs, {ram}; python {sys.version.split()[0]}; peak RSS from {how}"
