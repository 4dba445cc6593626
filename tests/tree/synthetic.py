"""Synthetic fingerprints for trees: families of a random base and derivatives that keep its coordinates.

A base has random sketches, raw responses and identity responses (`tests.classify.synth`); a child is its
parent plus noise on all three (a fine-tune: the weight test's signs agree, the sketches correlate); bases
are independent draws, so no two families share anything the weight test can see.
"""

from __future__ import annotations

import numpy as np

from lineage.fingerprint import Fingerprint
from tests.classify.synth import features, perturbed, random_responses, random_sketches, sketch_fingerprint


def _raw(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {f"layers.{i}.{k}": rng.normal(size=(12, 8)).astype(np.float32) for i in range(2) for k in ("q", "up")}


def base(name: str, rng: np.random.Generator) -> Fingerprint:
    fp = sketch_fingerprint(name, random_sketches(rng), features(rng), random_responses(rng))
    return _with_raw(fp, _raw(rng))


def child(name: str, parent: Fingerprint, rng: np.random.Generator, noise: float = 0.3) -> Fingerprint:
    sketches = perturbed(parent.sketches, rng, noise)
    identity = perturbed({k: v.astype(np.float32) for k, v in parent.identity.items()}, rng, noise)
    fp = sketch_fingerprint(name, sketches, dict(parent.tensorguard), identity)
    return _with_raw(fp, perturbed(parent.responses, rng, noise))


def _with_raw(fp: Fingerprint, raw: dict[str, np.ndarray]) -> Fingerprint:
    from dataclasses import replace

    return replace(fp, responses=raw)


def forest(families: int, size: int, seed: int = 0) -> list[Fingerprint]:
    """`families` trees of `size` models each: a base, its children, their children (a random parent each)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(families):
        members = [base(f"f{f}-0", rng)]
        for k in range(1, size):
            members.append(child(f"f{f}-{k}", members[int(rng.integers(0, len(members)))], rng))
        out += members
    return out
