"""Speed and memory of the fingerprint store: 1,000,000 suspects x 1,000 references classified in < 60 s.

What is measured, and why: a hub sweep leaves a million fingerprints; classifying them must cost one pass
over a memory-mapped matrix of compact vectors (`lineage.store`), not a million file opens. The store is
built synthetically here (its vectors drawn, not embedded from fingerprints: embedding is paid once per
fingerprint when the store is built from the cache, and is timed separately on real sketches below), so
the numbers are those of the store itself:

* build: appending N rows (float16 vectors, names, keys, layout ids) in batches of 65,536, as
  `lineage store build` does (drawing the synthetic vectors is not timed);
* classify: `classify_store` over all N rows against R references (blocked float32 products), plus the
  verdict count; no output formatting;
* peak RSS: each size runs in a fresh subprocess, so `ru_maxrss` is that size's own peak.

The vectors: R references in R/10 families (unit vectors in the embedding's dimension), suspects a random
reference plus noise, so the nearest reference is known and its recovery is printed as a sanity check.

Usage:
    python bench/bench_store.py [--sizes 10000 100000 1000000] [--refs 1000] [--dim 256] [--out /tmp/bench-store]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # run from a checkout without installing

from lineage.store import EmbeddingOptions, ReferenceVectors, Store, StoreWriter, classify_store  # noqa: E402

BATCH = 65536


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def run_one(n: int, refs: int, dim: int, out: Path) -> dict:
    """Build a store of `n` synthetic suspects and classify it against `refs` references (in this process)."""
    rng = np.random.default_rng(0)
    embedding = EmbeddingOptions(dim=dim)
    ref_vectors = _unit(rng.standard_normal((refs, dim)))
    families = tuple(f"fam{i // 10}" for i in range(refs))
    layout = {"basis": "tokens", "tokens": ["a", "b"], "seed": 0}
    references = ReferenceVectors(tuple(f"ref{i}" for i in range(refs)), families, ref_vectors, (layout,) * refs)
    shutil.rmtree(out, ignore_errors=True)
    truth = np.empty(n, np.int64)
    build_s = 0.0
    with StoreWriter(out, embedding) as writer:
        code = writer.layout_index(layout)
        writer.check_settings({"pipeline": 0})
        for start in range(0, n, BATCH):
            m = min(BATCH, n - start)
            pick = rng.integers(0, refs, m)
            truth[start : start + m] = pick
            vectors = _unit(ref_vectors[pick] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim))
            names = [f"suspect-{i}" for i in range(start, start + m)]
            t0 = time.perf_counter()  # drawing the synthetic vectors is not the store's cost
            writer.append(names, names, vectors, [code] * m)
            build_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    store = Store(out)
    verdicts = classify_store(store, references, threshold=0.5)
    classify_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    shutil.rmtree(out, ignore_errors=True)
    return {
        "suspects": n,
        "references": refs,
        "dim": dim,
        "build_s": round(build_s, 2),
        "classify_s": round(classify_s, 2),
        "rows_per_s": round(n / classify_s),
        "peak_rss_mb": round(rss_mb),
        "store_mb": round(size_mb),
        "nearest_right": round(float(np.mean(verdicts.nearest == truth)), 4),
        "needs_exact": round(float(np.mean(verdicts.needs_exact)), 4),
    }


def embed_speed(dim: int) -> str:
    """Time of embedding one fingerprint of realistic size (P = 64, 24 layers), the per-row cost of a real build."""
    from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint
    from lineage.store import Embedder

    rng = np.random.default_rng(1)
    sk = {c: rng.standard_normal((1, 64, 64)).astype(np.float32) for c in ("embed", "head", "unembed")}
    sk |= {c: rng.standard_normal((24, 64, 64)).astype(np.float32) for c in ("qk", "vo", "ffn")}
    fp = Fingerprint("x", dict.fromkeys(TENSORGUARD_FEATURES, 0.0), anchors=np.arange(300, 364), sketches=sk)
    embedder = Embedder(EmbeddingOptions(dim=dim))
    embedder.embed(fp)  # the layout's projection, once per anchor layout
    t0 = time.perf_counter()
    for _ in range(50):
        embedder.embed(fp)
    return f"embedding one fingerprint (P=64, 24 layers, dim {dim}): {(time.perf_counter() - t0) / 50 * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--refs", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-store"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.refs, args.dim, args.out / f"n{args.one}")))
        return
    print(
        f"{'suspects':>9} {'refs':>5} {'dim':>4} {'build s':>8} {'classify s':>10} {'rows/s':>10} "
        f"{'peak RSS MB':>11} {'store MB':>8} {'nearest ok':>10} {'needs exact':>11}"
    )
    for n in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--refs",
            str(args.refs),
            "--dim",
            str(args.dim),
            "--out",
            str(args.out),
        ]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"{r['suspects']:>9} {r['references']:>5} {r['dim']:>4} {r['build_s']:>8} {r['classify_s']:>10} "
            f"{r['rows_per_s']:>10} {r['peak_rss_mb']:>11} {r['store_mb']:>8} {r['nearest_right']:>10} "
            f"{r['needs_exact']:>11}"
        )
    print(embed_speed(args.dim))


if __name__ == "__main__":
    main()
