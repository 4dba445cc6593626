"""Fixtures of synthetic fingerprints and catalogs (helpers in `synth.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint

from .synth import (
    features,
    perturbed,
    random_responses,
    random_sketches,
    sketch_fingerprint,
    write_feature_json,
    write_manifest,
)


@pytest.fixture
def make_family_sketches() -> Callable[..., tuple[list[Fingerprint], list[str], list[Fingerprint], list[str]]]:
    """`(n_families, per_family, outsiders, noise, seed)` -> (bases, base families, suspects, truths).

    Every fingerprint carries sketches and raw responses; a derivative is its base plus `noise` on both.
    """

    def make(n_families: int = 3, per_family: int = 4, outsiders: int = 2, noise: float = 0.2, seed: int = 0):
        rng = np.random.default_rng(seed)
        bases, families, suspects, truth = [], [], [], []
        for f in range(n_families):
            base, responses = random_sketches(rng), random_responses(rng)
            bases.append(sketch_fingerprint(f"base{f}", base, features(rng), responses))
            families.append(f"fam{f}")
            for d in range(per_family):
                derived = perturbed(base, rng, noise)
                suspects.append(
                    sketch_fingerprint(f"fam{f}-d{d}", derived, features(rng), perturbed(responses, rng, noise))
                )
                truth.append(f"fam{f}")
        for o in range(outsiders):
            suspects.append(
                sketch_fingerprint(f"outsider{o}", random_sketches(rng), features(rng), random_responses(rng))
            )
            truth.append("unknown")
        return bases, families, suspects, truth

    return make


@pytest.fixture
def make_feature_fps() -> Callable[..., tuple[list[Fingerprint], list[str], list[Fingerprint], list[str]]]:
    """Feature-only fingerprints in well separated blobs: (bases, families, suspects, truths)."""

    def make(n_families: int = 3, per_family: int = 5, seed: int = 0, spread: float = 0.3):
        rng = np.random.default_rng(seed)
        bases, families, suspects, truth = [], [], [], []
        for f in range(n_families):
            centre = rng.normal(0, 10, len(TENSORGUARD_FEATURES))
            bases.append(
                Fingerprint(name=f"base{f}", tensorguard=features(rng, centre, spread), source="tensorguard-json")
            )
            families.append(f"fam{f}")
            for d in range(per_family):
                suspects.append(
                    Fingerprint(
                        name=f"fam{f}-d{d}", tensorguard=features(rng, centre, spread), source="tensorguard-json"
                    )
                )
                truth.append(f"fam{f}")
        return bases, families, suspects, truth

    return make


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    """A manifest of feature JSONs: 3 bases, 6 derivatives, 1 outsider, 1 missing file, 1 corrupt file."""
    rng = np.random.default_rng(1)
    rows = []
    centres = {f: rng.normal(0, 10, len(TENSORGUARD_FEATURES)) for f in ("llama", "qwen", "phi")}
    for family, centre in centres.items():
        write_feature_json(tmp_path, f"{family}-base", features(rng, centre, 0.2))
        rows.append(
            {"name": f"{family}-base", "path": f"{family}-base_features.json", "family": family, "role": "base"}
        )
        for d, kind in enumerate(("finetune", "merge")):
            name = f"{family}-{kind}"
            write_feature_json(tmp_path, name, features(rng, centre, 0.2))
            rows.append(
                {
                    "name": name,
                    "path": f"{name}_features.json",
                    "family": family,
                    "base": f"{family}-base",
                    "role": "derivative",
                    "derivation": kind,
                }
            )
    write_feature_json(tmp_path, "stranger", features(rng, rng.normal(0, 10, len(TENSORGUARD_FEATURES)), 0.2))
    rows.append({"name": "stranger", "path": "stranger_features.json", "family": "unknown", "role": "outsider"})
    rows.append(
        {
            "name": "ghost",
            "path": "ghost_features.json",
            "family": "llama",
            "base": "llama-base",
            "role": "derivative",
            "derivation": "finetune",
        }
    )
    (tmp_path / "broken_features.json").write_text("{not json")
    rows.append(
        {
            "name": "broken",
            "path": "broken_features.json",
            "family": "qwen",
            "base": "qwen-base",
            "role": "derivative",
            "derivation": "quantized",
        }
    )
    return write_manifest(tmp_path / "manifest.csv", rows, ("name", "path", "family", "base", "role", "derivation"))
