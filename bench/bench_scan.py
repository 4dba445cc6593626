"""Speed of `lineage scan` over cached fingerprints: 10,000 suspects against 8 bases in under a minute.

What is measured, and why: fingerprinting is paid once per model and cached; what a hub operator repeats
is the scan, which must then cost loading the fingerprints plus one batched classification, not
fingerprinting and not a Python loop over pairs. The bench writes N synthetic models the way the cache
holds them and times `lineage.jobs.scan.scan` over a manifest of all of them (the library call behind
`lineage scan`, without the terminal output). Goals: 10,000 models in < 60 s; a 58-model scan < 5 s.

The models: 8 bases in 5 families (llama 3, qwen 2, mistral, gemma, phi, like the published table), and N
suspects, 95% derivatives (the base's sketches plus noise of a random strength) and 5% outsiders (drawn
independently). Each fingerprint has realistic sizes: P = 64 anchors, one [1, 64, 64] float32 sketch per
model-level circuit (`embed`, `head`, ...) and one [8, 64, 64] per layer circuit (`qk`, `vo`, `ffn`):
about 425 KB per file, 4.3 GB for 10,000. Every model is
a folder holding a minimal safetensors file (unique header), and its fingerprint sits in a
`FingerprintCache` under that folder's `cache_key`, so the scan takes the real cached path: one
`cache_key` (headers + sizes) and one cache read per model, nothing fingerprinted.

Writing the models is not timed (about a minute, once; `--reuse` keeps them). The scan is timed cold
in-process from the manifest, twice (the second run has the OS page cache warm), and the 58-model rows
time the first 58 rows and the published demo catalog.

Usage:
    python bench/bench_scan.py [--models 10000] [--out bench/out/scan] [--method lineage] [--reuse]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # run from a checkout without installing

from lineage.features.sketch import LAYER_CIRCUITS, MODEL_CIRCUITS  # noqa: E402
from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint  # noqa: E402
from lineage.fingerprint.cache import FingerprintCache  # noqa: E402

P, LAYERS = 64, 8
BASES = (
    ("llama-8b", "llama"), ("llama-1b", "llama"), ("llama-3b", "llama"), ("qwen-3b", "qwen"),
    ("qwen-7b", "qwen"), ("mistral-7b", "mistral"), ("gemma-4b", "gemma"), ("phi-4", "phi"),
)  # fmt: skip
GOAL_S, GOAL_58_S = 60.0, 5.0


def _sketches(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {c: rng.standard_normal((1, P, P), dtype=np.float32) for c in MODEL_CIRCUITS}
    out |= {c: rng.standard_normal((LAYERS, P, P), dtype=np.float32) for c in LAYER_CIRCUITS}
    return out


def _fingerprint(name: str, sketches: dict[str, np.ndarray], rng: np.random.Generator) -> Fingerprint:
    features = dict(zip(TENSORGUARD_FEATURES, rng.normal(0.0, 1.0, len(TENSORGUARD_FEATURES)).tolist()))
    return Fingerprint(name=name, tensorguard=features, anchors=np.arange(P, dtype=np.int64) * 7, sketches=sketches)


def _model_folder(folder: Path, index: int) -> None:
    """A minimal checkpoint whose header is unique (the cache key hashes headers, sizes and times)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"model.embed_tokens.weight": np.zeros((2, 2), np.float32)}, str(folder / "model.safetensors"),
              metadata={"bench_index": str(index)})  # fmt: skip


def write_models(out: Path, n: int, seed: int = 0) -> Path:
    """Write 8 bases and `n` suspects as model folders with cached fingerprints; returns the manifest."""
    from lineage.fingerprint.pipeline import FingerprintOptions, cache_key

    rng = np.random.default_rng(seed)
    cache, options = FingerprintCache(out / "cache"), FingerprintOptions()
    base_sketches, rows = [], []
    total = len(BASES) + n
    for i in range(total):
        if i < len(BASES):
            name, family = BASES[i]
            sketches, base, role = _sketches(rng), "", "base"
            base_sketches.append(sketches)
        elif rng.random() < 0.05:
            name, family, base, role, sketches = f"outsider-{i}", "unknown", "", "outsider", _sketches(rng)
        else:
            b = int(rng.integers(len(BASES)))
            name, family, base, role = f"model-{i}", BASES[b][1], BASES[b][0], "derivative"
            level = float(rng.uniform(0.05, 0.8))
            sketches = {
                c: (s + level * rng.standard_normal(s.shape, dtype=np.float32)) for c, s in base_sketches[b].items()
            }
        folder = out / "models" / name
        _model_folder(folder, i)
        cache.put(cache_key(folder, options), _fingerprint(name, sketches, rng))
        rows.append({"name": name, "path": f"models/{name}", "family": family, "base": base, "role": role})
        if (i + 1) % 1000 == 0:
            print(f"  wrote {i + 1}/{total}", file=sys.stderr)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "path", "family", "base", "role"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def timed_scan(manifest, cache_dir: Path | None, method: str) -> tuple[float, dict]:  # noqa: ANN001
    from lineage.jobs.scan import ScanOptions, scan

    start = time.perf_counter()
    result = scan(manifest, ScanOptions(method=method, cache_dir=cache_dir, device="cpu"))
    return time.perf_counter() - start, result.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000, help="number of suspects (plus 8 bases)")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "scan", help="where models and cache go")
    parser.add_argument("--method", default="lineage", choices=("lineage", "tensorguard"))
    parser.add_argument("--reuse", action="store_true", help="keep models written by an earlier run")
    args = parser.parse_args()

    manifest = args.out / "manifest.csv"
    if not (args.reuse and manifest.is_file()):
        start = time.perf_counter()
        manifest = write_models(args.out, args.models)
        print(f"wrote {args.models + len(BASES)} models and cached fingerprints in {time.perf_counter() - start:.1f} s")

    from lineage.refs.manifest import read_manifest

    full = read_manifest(manifest)
    for run in (1, 2):
        seconds, summary = timed_scan(full, args.out / "cache", args.method)
        print(
            f"scan {summary['models']} models ({args.method}), run {run}: {seconds:.1f} s "
            f"[goal < {GOAL_S:.0f} s] fingerprinted {summary['fingerprinted']}, cached {summary['cached']}; "
            f"family accuracy {summary['family_accuracy']['rate']}, outsiders flagged "
            f"{summary['outsiders']['flagged']}/{summary['outsiders']['total']}"
        )
    subset = type(full)(full.path, full.rows[:58], full.has_role)
    seconds, summary = timed_scan(subset, args.out / "cache", args.method)
    print(f"scan 58 cached models ({args.method}): {seconds:.2f} s [goal < {GOAL_58_S:.0f} s]")
    seconds, summary = timed_scan(None, None, args.method)
    print(f"scan of the demo catalog (58 published feature files, {args.method}): {seconds:.2f} s")


if __name__ == "__main__":
    main()
