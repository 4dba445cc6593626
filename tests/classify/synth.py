"""Synthetic fingerprints and catalogs with a known answer, for the classification tests.

Sketch fingerprints: each family has a random base sketch and random identity responses (the weight
test's input, `lineage.probe.identity`); a derivative is its base plus a little noise on both; an outsider
is drawn independently. Their correlation distances are then about 0 within a family and about 1 across,
which is what the calibration and the classifier must recover, and a derivative's responses keep its base's
signs where an outsider's are independent draws: the weight test's two hypotheses.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

P, LAYERS = 16, 2
#: Sizes of the synthetic identity responses: residual coordinates, FFN units, value dimensions, mixtures, seeded
#: inputs (read at the COORDS coordinates too).
COORDS, UNITS, VALUES, MIXTURES, SEEDED, FRAME = 32, 64, 16, 16, 4, 16
#: The sign symmetries a synthetic fingerprint declares (those of an RMSNorm model with a gated FFN).
SYMMETRY = ["value", "residual", "ffn"]


def features(rng: np.random.Generator, centre: np.ndarray | None = None, spread: float = 1.0) -> dict[str, float]:
    """15 TensorGuard features around `centre` (random when None)."""
    centre = rng.normal(0, 10, len(TENSORGUARD_FEATURES)) if centre is None else centre
    values = centre + rng.normal(0, spread, len(TENSORGUARD_FEATURES))
    return dict(zip(TENSORGUARD_FEATURES, values.tolist()))


def sketch_fingerprint(
    name: str,
    sketches: dict[str, np.ndarray],
    feats: dict[str, float],
    identity: dict[str, np.ndarray] | None = None,
) -> Fingerprint:
    return Fingerprint(
        name=name,
        tensorguard=feats,
        anchors=np.arange(P, dtype=np.int64),
        sketches=sketches,
        # float16, as the pipeline stores them: a fingerprint is the same in memory and after a file round trip
        identity={k: np.asarray(v, dtype=np.float16) for k, v in (identity or {}).items()},
        settings={"symmetry": SYMMETRY},
    )


def random_responses(rng: np.random.Generator, layers: int = LAYERS) -> dict[str, np.ndarray]:
    """Independent identity responses, shaped as a fingerprint stores them (`Fingerprint.identity`)."""
    shapes = {"resid_vo": (P, COORDS), "resid_ffn": (P, COORDS), "gate": (UNITS, MIXTURES),
              "up": (UNITS, MIXTURES), "down": (UNITS, MIXTURES), "v": (VALUES, MIXTURES), "o": (VALUES, MIXTURES)}
    out = {f"layers.{i}.{kind}": rng.normal(size=shape).astype(np.float32)
           for i in range(layers) for kind, shape in shapes.items()}  # fmt: skip
    out["embed"] = rng.normal(size=(P, COORDS)).astype(np.float32)
    # Drawn last, so every response above is what it was before the seeded ones existed.
    out |= {f"layers.{i}.{kind}": rng.normal(size=(SEEDED, COORDS)).astype(np.float32)
            for i in range(layers) for kind in ("seeded_vo", "seeded_ffn")}  # fmt: skip
    # And the weight frame's: its Gram, and the units' profiles on it, from a child generator (spawning one draws
    # nothing from `rng`, so every draw a test makes after this is what it was before frames existed).
    child = rng.spawn(1)[0]
    frame = child.normal(size=(FRAME, 2 * FRAME))
    out["frame"] = (frame @ frame.T / (2 * FRAME)).astype(np.float32)
    out |= {f"layers.{i}.frame_{kind}": child.normal(size=(UNITS, FRAME)).astype(np.float32)
            for i in range(layers) for kind in ("gate", "up", "down")}  # fmt: skip
    return out


def perturbed(arrays: dict[str, np.ndarray], rng: np.random.Generator, noise: float) -> dict[str, np.ndarray]:
    """`arrays` plus Gaussian noise of standard deviation `noise` (a derivative of them). The weight frame's Gram
    (`frame`) is the Gram of the directions a derivative moves: its noise is scaled to the spread of its
    off-diagonal entries (moving unit directions by a relative `noise` moves their inner products by about that
    much of their spread, not by `noise` itself)."""
    out = {}
    for k, v in arrays.items():
        scale = noise * (float(np.std(v[~np.eye(len(v), dtype=bool)])) if k == "frame" else 1.0)
        out[k] = (v + scale * rng.normal(size=v.shape)).astype(np.float32)
    return out


def random_sketches(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Independent random sketches for every circuit the similarity compares."""
    from lineage.features.sketch import LAYER_CIRCUITS, MODEL_CIRCUITS

    out = {c: rng.normal(size=(1, P, P)).astype(np.float32) for c in MODEL_CIRCUITS}
    out |= {c: rng.normal(size=(LAYERS, P, P)).astype(np.float32) for c in LAYER_CIRCUITS}
    return out


def write_feature_json(folder: Path, name: str, feats: dict[str, float]) -> Path:
    """A TensorGuard-style `<name>_features.json`."""
    path = folder / f"{name}_features.json"
    path.write_text(json.dumps({**feats, "model_name": name}))
    return path


def write_manifest(
    path: Path, rows: list[dict], columns: tuple[str, ...] = ("name", "path", "family", "base", "role")
) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def tiny_llama(seed: int, parent: dict | None = None, noise: float = 0.01) -> dict:
    """A tiny Llama state dict: random from `seed`, or `parent` plus a little noise (see tests.checkpoints)."""
    return tiny_llama_tensors(seed, parent, noise)


def write_tiny_model(folder: Path, tensors: dict) -> Path:
    """A Hugging Face style folder: config.json and model.safetensors."""
    return write_checkpoint(folder, tensors)
