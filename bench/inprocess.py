"""One fingerprint inside one Python process: where the time goes, and how far it is from the compute floor.

What it measures, printed as one JSON object on stdout (the benches run it as a child process):

- `import_s`: importing torch and lineage's pipeline (what every command that fingerprints pays first);
- `fingerprint_s`: `fingerprint_model` on the checkpoint, warm (a first, unmeasured run on a tiny slice of the
  same work is not done: the page cache is warm, the process is not, which is what one model of a scan costs);
- `write_s`: writing the fingerprint file;
- `peak_rss_mb`: the process's peak resident memory;
- `threads`: how lineage's thread policy chose the pools (`lineage.fingerprint.threads`, applied before torch
  is imported, as every command does; `--no-policy` leaves torch's own pools and OpenMP wait), and `pools`,
  their sizes after the fingerprint.

With `--profile` (one more, profiled run; cProfile slows Python-level code a little, not the products):

- `breakdown`: seconds by stage, from each function's *own* time, so nothing is counted twice: opening (headers,
  layout), anchors (tokenizer, embedding rows), read (positioned reads), convert (stored dtype to float32),
  products (the one matrix product per block that every probe row rides in), profiles and statistics (unit
  profiles gathered and read, gradient statistics, the adversarial read-back), other (Python, small tensor
  operations);
- `products_gflop`: the floating-point work of those products, counted on the products actually made;
- `floor_s`: the same products (same shapes, same count) on data already in the cache: the time no engine can
  beat on this machine with these probe rows. `floor_s / read_s` is the best ratio the fingerprint's design
  allows.

Usage:
    python bench/inprocess.py CHECKPOINT [--device cpu] [--profile] [--no-policy] [--block-mb MB] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

STAGES = {  # cProfile function names (own time) -> stage
    "posix.preadv": "read",
    "posix.open": "read",
    "posix.close": "read",
    "copy_": "convert",
    "to": "convert",
    "mm": "products",
    "addmm_": "profiles and statistics",
    "index_select": "profiles and statistics",
    "searchsorted": "profiles and statistics",
}
PHASES = {"open_checkpoint": "opening", "resolve_model": "opening", "_anchors": "anchors"}  # cumulative time


def _function(name: str) -> str:
    """`<built-in method torch.mm>` -> `mm`, `<method 'copy_' of 'torch._C.TensorBase' objects>` -> `copy_`."""
    name = name.strip("<>")
    if name.startswith("method '"):
        return name.split("'")[1]
    return name.replace("built-in method ", "").rsplit(".", 1)[-1] if name.startswith("built-in") else name


def _breakdown(stats, total: float) -> dict[str, float]:  # noqa: ANN001 - pstats.Stats
    own: Counter = Counter()
    cumulative: Counter = Counter()
    for (_, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        raw = name.strip("<>").replace("built-in method ", "")
        stage = STAGES.get(raw) or STAGES.get(_function(name))
        if stage:
            own[stage] += tottime
        if name in PHASES:
            cumulative[PHASES[name]] += cumtime
    out = {"opening": cumulative["opening"], "anchors": cumulative["anchors"]}
    out |= {stage: own[stage] for stage in ("read", "convert", "products", "profiles and statistics")}
    out["other"] = max(0.0, total - sum(out.values()))
    return out


class _ProductCounter:
    """Wraps `torch.mm` to record the shapes of every product made (the engine's one product per block)."""

    def __init__(self, torch) -> None:  # noqa: ANN001 - the torch module
        self.torch, self.original, self.shapes = torch, torch.mm, Counter()

    def __enter__(self) -> _ProductCounter:
        def counted(a, b, **kwargs):  # noqa: ANN001, ANN202
            self.shapes[(a.shape[0], a.shape[1], b.shape[1])] += 1
            return self.original(a, b, **kwargs)

        self.torch.mm = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.torch.mm = self.original

    def gflop(self) -> float:
        return sum(2 * m * k * n * c for (m, k, n), c in self.shapes.items()) / 1e9

    def floor_s(self, device: str) -> float:
        """Seconds the same products take on cache-hot random data (each shape timed, times its count)."""
        torch, total = self.torch, 0.0
        for (m, k, n), count in self.shapes.items():
            a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
            out = torch.empty(m, n, device=device)
            reps = max(3, min(count, 200))
            for _ in range(2):
                torch.mm(a, b, out=out)
            _sync(torch, device)
            t = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=out)
            _sync(torch, device)
            total += (time.perf_counter() - t) / reps * count
        return total


def _sync(torch, device: str) -> None:  # noqa: ANN001
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="add the breakdown and the compute floor")
    parser.add_argument("--out", type=Path, default=None, help="also write the fingerprint here")
    parser.add_argument("--no-policy", action="store_true", help="torch's own pools and wait, not lineage's")
    parser.add_argument("--block-mb", type=float, default=None, help="the engine's block size in MB (default: its own)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    from lineage.fingerprint.threads import Cores, pool_sizes, prepare_process

    # As every command that fingerprints does, before torch is imported (OpenMP reads its settings then).
    cores = Cores.detect() if args.no_policy else prepare_process()
    import torch

    from lineage.fingerprint import pipeline
    from lineage.fingerprint.format import save_fingerprint
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

    if args.block_mb:  # what `lineage.probe.engine.block_bytes` chose its size from
        pipeline.block_bytes = lambda device: int(args.block_mb * (1 << 20))

    result = {"import_s": time.perf_counter() - t0, "threads": "no policy" if args.no_policy else cores.describe()}
    options = FingerprintOptions(device=args.device)
    t = time.perf_counter()
    fp = fingerprint_model(args.checkpoint, options)
    _sync(torch, args.device)
    result["fingerprint_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        save_fingerprint(fp, args.out or Path(tmp) / "fp.fingerprint.safetensors")
        result["write_s"] = time.perf_counter() - t
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    result["pools"] = pool_sizes()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        with _ProductCounter(torch) as counter:
            t = time.perf_counter()
            profiler.enable()
            fingerprint_model(args.checkpoint, options)
            profiler.disable()
            profiled = time.perf_counter() - t
        result["profiled_s"] = profiled
        result["breakdown"] = _breakdown(pstats.Stats(profiler), profiled)
        result["products_gflop"] = counter.gflop()
        result["floor_s"] = counter.floor_s(args.device)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
