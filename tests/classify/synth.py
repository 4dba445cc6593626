"""Synthetic fingerprints and catalogs with a known answer, for the classification tests.

Sketch fingerprints: each family has a random base sketch; a derivative is its base plus a little noise;
an outsider is drawn independently. Their correlation distances are then about 0 within a family and
about 1 across, which is what the calibration and the classifier must recover.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint

P, LAYERS = 16, 2


def features(rng: np.random.Generator, centre: np.ndarray | None = None, spread: float = 1.0) -> dict[str, float]:
    """15 TensorGuard features around `centre` (random when None)."""
    centre = rng.normal(0, 10, len(TENSORGUARD_FEATURES)) if centre is None else centre
    values = centre + rng.normal(0, spread, len(TENSORGUARD_FEATURES))
    return dict(zip(TENSORGUARD_FEATURES, values.tolist()))


def sketch_fingerprint(name: str, sketches: dict[str, np.ndarray], feats: dict[str, float]) -> Fingerprint:
    return Fingerprint(name=name, tensorguard=feats, anchors=np.arange(P, dtype=np.int64), sketches=sketches)


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


TINY_LLAMA_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 128,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


def tiny_llama(seed: int, parent: dict | None = None, noise: float = 0.01) -> dict:
    """A tiny Llama state dict (numpy float32): random from `seed`, or `parent` plus a little noise."""
    rng = np.random.default_rng(seed)
    if parent is not None:
        return {k: (v + noise * rng.standard_normal(v.shape)).astype(np.float32) for k, v in parent.items()}
    c = TINY_LLAMA_CONFIG
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd

    def rnd(*shape: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)

    out = {"model.embed_tokens.weight": rnd(c["vocab_size"], d), "model.norm.weight": 1 + rnd(d)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": 1 + rnd(d),
            p + "post_attention_layernorm.weight": 1 + rnd(d),
            p + "self_attn.q_proj.weight": rnd(q, d),
            p + "self_attn.k_proj.weight": rnd(kv, d),
            p + "self_attn.v_proj.weight": rnd(kv, d),
            p + "self_attn.o_proj.weight": rnd(d, q),
            p + "mlp.gate_proj.weight": rnd(f, d),
            p + "mlp.up_proj.weight": rnd(f, d),
            p + "mlp.down_proj.weight": rnd(d, f),
        }
    return out


def write_tiny_model(folder: Path, tensors: dict) -> Path:
    """A Hugging Face style folder: config.json and model.safetensors."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA_CONFIG))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder
