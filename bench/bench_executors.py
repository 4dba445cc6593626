"""Serial vs parallel fingerprinting: `lineage scan` on the local, process and ray executors.

What is measured, and why: a hub sweep needs many workers, and the issue's target is that 2 local workers
on a 2-core machine take no longer than serial (plus Ray's start-up for Ray), with the same results.
Each executor scans the same manifest with a fresh, empty fingerprint cache, so every model is
fingerprinted; the time is the whole `lineage.jobs.scan.scan` call (workers' start-up included: spawned
processes import torch, Ray starts a local cluster unless one is running). The serial scan is the
reference: for each other executor the bench prints whether its result rows are identical to the serial
rows, whether the verdicts are (model, verdict, family, base), and the largest difference of any number in
the rows (worker processes run their share of the cores, `lineage.fingerprint.threads`: 2 cores and 2 jobs
give one thread each, and float32 sums split over another number of threads round differently in the last
bits; `--same-threads` gives the workers this process's thread count, the setting under which the
fingerprints are bit-identical).

Manifests: the mini catalog (built into .lineage/test-catalogs/mini when missing, as the tests do); with
`--full` also the full catalog (the repository's models_manifest.csv, when every model it names is built
under catalog/models/); with `--manifest PATH` any manifest.

Usage:
    python bench/bench_executors.py [--jobs 2] [--full] [--manifest PATH] [--no-ray] [--same-threads]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from lineage.errors import ExecutorError  # noqa: E402

FULL_MANIFEST = ROOT / "models_manifest.csv"


def _max_diff(a: object, b: object) -> float:
    """The largest difference between numbers at the same place in two JSON-like values (inf: shapes differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return math.inf
        return max((_max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return math.inf
        return max((_max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float) or not isinstance(b, int | float):
        return 0.0 if a == b else math.inf
    if math.isnan(a) and math.isnan(b):
        return 0.0
    return abs(a - b)


@contextmanager
def _ray_cluster(executor, jobs: int):  # noqa: ANN001, ANN202
    """For the ray executor: a local cluster of `jobs` CPUs started (and timed: `[seconds]`) before the scan."""
    if executor.kind != "ray":
        yield None
        return
    import ray

    start = time.perf_counter()
    try:
        ray.init(num_cpus=jobs, include_dashboard=False, logging_level="warning")
    except Exception as exc:  # noqa: BLE001 - Ray's start-up can time out on a loaded machine
        raise ExecutorError(f"local Ray cluster: {exc}") from exc
    try:
        yield [time.perf_counter() - start]
    finally:
        ray.shutdown()


def _verdicts(rows: list[dict]) -> list[tuple]:
    return [(r["model"], r.get("verdict"), r.get("family"), r.get("base")) for r in rows]


def _time_scan(manifest: Path, executor, device: str):  # noqa: ANN001, ANN202
    from lineage.jobs.scan import ScanOptions, scan

    with tempfile.TemporaryDirectory(prefix="bench-executors-") as cache:
        start = time.perf_counter()
        result = scan(manifest, ScanOptions(device=device, cache_dir=Path(cache), executor=executor))
        return time.perf_counter() - start, result


def bench(manifest: Path, label: str, args: argparse.Namespace) -> None:
    import torch

    from lineage.fingerprint.executors import ExecutorOptions

    threads = torch.get_num_threads() if args.same_threads else None
    runs = [("local", ExecutorOptions())]
    runs.append((f"process --jobs {args.jobs}", ExecutorOptions("process", jobs=args.jobs, threads=threads)))
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray: not installed (pip install 'lineage[ray]'), skipped")
        else:
            runs.append((f"ray --jobs {args.jobs}", ExecutorOptions("ray", jobs=args.jobs, threads=threads)))
    print(f"\n{label}: {manifest}")
    header = f"{'executor':<30} {'seconds':>8} {'models':>7} {'failed':>7}  {'rows identical':<15} {'verdicts':<9}"
    print(f"{header} max diff")
    serial_rows = None
    for name, executor in runs:
        try:
            with _ray_cluster(executor, args.jobs) as startup:
                seconds, result = _time_scan(manifest, executor, args.device)
        except ExecutorError as exc:
            print(f"{name:<30} failed to start: {exc}")
            continue
        if startup is not None:
            name = f"{name} (+{startup[0]:.1f}s start)"
        rows = result.rows
        if serial_rows is None:
            serial_rows = rows
            same, verdicts, diff = "(reference)", "", ""
        else:
            same = "yes" if rows == serial_rows else "no"
            verdicts = "same" if _verdicts(rows) == _verdicts(serial_rows) else "DIFFER"
            diff = f"{_max_diff(rows, serial_rows):.2e}"
        print(f"{name:<30} {seconds:8.1f} {len(rows):7d} {len(result.failed):7d}  {same:<15} {verdicts:<9} {diff}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="workers for the process and ray executors")
    parser.add_argument("--full", action="store_true", help="also the full catalog (models_manifest.csv)")
    parser.add_argument("--manifest", type=Path, help="also this manifest")
    parser.add_argument("--no-ray", action="store_true", help="leave out the ray executor")
    parser.add_argument("--same-threads", action="store_true", help="workers use this process's torch threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import lineage.fingerprint.pipeline  # noqa: F401 - the probing stack imported before any clock starts
    from lineage.catalog.build import BuildOptions, build_catalog

    mini = build_catalog(BuildOptions(size="mini", out_dir=ROOT / ".lineage" / "test-catalogs" / "mini"))
    bench(mini, "mini catalog", args)
    if args.full:
        from lineage.refs.manifest import read_manifest

        rows = read_manifest(FULL_MANIFEST).rows if FULL_MANIFEST.is_file() else []
        missing = [r.name for r in rows if not r.path.exists()]
        if rows and not missing:
            bench(FULL_MANIFEST, f"full catalog ({len(rows)} models)", args)
        else:
            print(f"\nfull catalog: not built ({len(missing)} of {len(rows)} models missing): skipped")
    if args.manifest is not None:
        bench(args.manifest, "manifest", args)


if __name__ == "__main__":
    main()
