"""Speed of `lineage tree`: how the time to recover a tree grows with the number of models (goal: 1,000 models
in under 10 minutes on 2 cores).

What is measured: synthetic fingerprints (no model is read: fingerprinting is `bench_fingerprint.py`'s
business and is paid once per model, cached) in families of `--family` models, a base and derivatives of a
random earlier member (the parent plus noise on its sketches, raw and identity responses, so the weight
test links relatives and nothing else). Their compact vectors are written to a fingerprint store
(`lineage.store`) and read back from it, as a hub-sized run would; then `build_tree` runs on them: nearest
neighbours by compact vector, sketch and raw distances of the candidate pairs, weight tests in Kruskal's
order, Benjamini-Hochberg, merges, directions. Each size prints the seconds of the store round trip and of
the tree, the candidate pairs and the weight tests run, and whether every edge joins two models of one family.

Fingerprint sizes: 32 anchors, 8 layers, 64 residual coordinates, 128 FFN units, 32 value dimensions, 16
mixtures (the catalog's small models have 64 anchors, 3-5 layers, 128 coordinates).

Usage:
    python bench/bench_tree.py [--sizes 100 250 500 1000] [--family 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # run from a checkout without installing

from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint  # noqa: E402
from lineage.store import EmbeddingOptions, Store, StoreWriter  # noqa: E402
from lineage.tree import build_tree  # noqa: E402
from lineage.tree.candidates import compact_vectors  # noqa: E402

P, LAYERS, COORDS, UNITS, VALUES, MIXTURES = 32, 8, 64, 128, 32, 16


def _base(name: str, rng: np.random.Generator) -> Fingerprint:
    from lineage.features.sketch import LAYER_CIRCUITS, MODEL_CIRCUITS

    sketches = {c: rng.normal(size=(1, P, P)).astype(np.float32) for c in MODEL_CIRCUITS}
    sketches |= {c: rng.normal(size=(LAYERS, P, P)).astype(np.float32) for c in LAYER_CIRCUITS}
    shapes = {"resid_vo": (P, COORDS), "resid_ffn": (P, COORDS), "gate": (UNITS, MIXTURES), "up": (UNITS, MIXTURES),
              "down": (UNITS, MIXTURES), "v": (VALUES, MIXTURES), "o": (VALUES, MIXTURES)}  # fmt: skip
    identity = {f"layers.{i}.{k}": rng.normal(size=s) for i in range(LAYERS) for k, s in shapes.items()}
    identity["embed"] = rng.normal(size=(P, COORDS))
    raw = {f"layers.{i}.{k}": rng.normal(size=(12, 8)) for i in range(LAYERS) for k in ("q", "k", "v", "o", "up")}
    return _fingerprint(name, sketches, identity, raw, rng)


def _fingerprint(name: str, sketches: dict, identity: dict, raw: dict, rng: np.random.Generator) -> Fingerprint:
    return Fingerprint(
        name=name, tensorguard=dict(zip(TENSORGUARD_FEATURES, rng.normal(size=len(TENSORGUARD_FEATURES)).tolist())),
        anchors=np.arange(P, dtype=np.int64), sketches={k: v.astype(np.float32) for k, v in sketches.items()},
        identity={k: np.asarray(v, dtype=np.float16) for k, v in identity.items()},
        responses={k: np.asarray(v, dtype=np.float32) for k, v in raw.items()},
        settings={"symmetry": ["value", "residual", "ffn"]},
    )  # fmt: skip


def _child(name: str, parent: Fingerprint, rng: np.random.Generator, noise: float = 0.3) -> Fingerprint:
    def moved(arrays: dict) -> dict:
        return {k: v.astype(np.float64) + noise * rng.normal(size=v.shape) for k, v in arrays.items()}

    return _fingerprint(name, moved(parent.sketches), moved(parent.identity), moved(parent.responses), rng)


def synthetic(n: int, family: int, seed: int = 0) -> list[Fingerprint]:
    rng = np.random.default_rng(seed)
    out: list[Fingerprint] = []
    for f in range(0, n, family):
        members = [_base(f"f{f // family}-0", rng)]
        for k in range(1, min(family, n - f)):
            members.append(_child(f"f{f // family}-{k}", members[int(rng.integers(0, len(members)))], rng))
        out += members
    return out


def run(n: int, family: int) -> dict:
    fps = synthetic(n, family)
    folder = Path(tempfile.mkdtemp(prefix="bench-tree-"))
    try:
        t0 = time.perf_counter()
        embedding = EmbeddingOptions()
        with StoreWriter(folder / "store", embedding) as writer:
            code = writer.layout_index({"basis": "ids", "tokens": [], "seed": 0})
            writer.check_settings({"pipeline": 0})
            names = [fp.name for fp in fps]
            writer.append(names, names, compact_vectors(fps, embedding), [code] * len(fps))
        store = Store(folder / "store")
        vectors = store.block(0, len(store))[0].astype(np.float32)
        store_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tree = build_tree([replace(fp, name=nm) for fp, nm in zip(fps, store.names())], vectors=vectors)
        tree_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    within = all(e.parent.split("-")[0] == e.child.split("-")[0] for e in tree.edges)
    return {"models": n, "store_s": store_s, "tree_s": tree_s, "candidates": tree.candidates, "tests": tree.tested,
            "edges": len(tree.edges), "true_edges": n - -(-n // family), "within_families": within}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000])
    parser.add_argument("--family", type=int, default=10)
    args = parser.parse_args()
    print(f"{'models':>7} {'store s':>8} {'tree s':>8} {'s/model':>8} {'candidates':>10} {'tests':>6} {'edges':>6} "
          f"{'true':>5} {'within families':>15}")  # fmt: skip
    for n in args.sizes:
        r = run(n, args.family)
        print(f"{r['models']:>7} {r['store_s']:>8.1f} {r['tree_s']:>8.1f} {r['tree_s'] / n:>8.3f} "
              f"{r['candidates']:>10} {r['tests']:>6} {r['edges']:>6} {r['true_edges']:>5} "
              f"{str(r['within_families']):>15}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
