"""Small fingerprints with a known family, written as files: for tests of the jobs around classification
(scans, packs, rows, reports) that must not depend on how the derivation test decides.

A fingerprint here carries the 15 TensorGuard features around its family's centre (so `--method tensorguard`
classifies it by family) and tiny random sketches (so it can go into a reference pack).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint, save_fingerprint

P = 8


def family_centres(names: tuple[str, ...] = ("llama", "qwen"), seed: int = 0) -> dict[str, np.ndarray]:
    """A far-apart feature centre per family."""
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 10, len(TENSORGUARD_FEATURES)) for n in names}


def fake_fingerprint(name: str, centre: np.ndarray, seed: int, sketches: bool = True) -> Fingerprint:
    """A fingerprint near `centre` (features), with small random sketches and raw responses when asked."""
    rng = np.random.default_rng(seed)
    feats = dict(zip(TENSORGUARD_FEATURES, (centre + rng.normal(0, 0.2, len(centre))).tolist()))
    if not sketches:
        return Fingerprint(name=name, tensorguard=feats, source="tensorguard-json")
    sk = {c: rng.normal(size=(1, P, P)).astype(np.float32) for c in ("embed", "head", "unembed")}
    sk |= {c: rng.normal(size=(2, P, P)).astype(np.float32) for c in ("qk", "vo", "ffn")}
    responses = {f"layers.{i}.q": rng.normal(size=(12, 8)).astype(np.float32) for i in range(2)}
    return Fingerprint(
        name=name, tensorguard=feats, anchors=np.arange(P, dtype=np.int64), sketches=sk, responses=responses
    )


def write_fake(folder: Path, name: str, centre: np.ndarray, seed: int, sketches: bool = True) -> Path:
    """`fake_fingerprint` saved as `<folder>/<name>.fingerprint.safetensors`; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    return save_fingerprint(fake_fingerprint(name, centre, seed, sketches), folder / f"{name}.fingerprint.safetensors")
