"""TensorGuard's fingerprint, computed the way its published scripts do it: the baseline lineage replaces.

What it measures: the cost (wall time, peak memory) of the published recipe on a real checkpoint layout, so
that `bench_fingerprint.py` can put lineage next to it. It is written from the paper's description (arXiv
2506.01631), not from TensorGuard's code, and it keeps the engineering choices that make the
recipe expensive, because those are what is being measured:

- every tensor of layers 0-15, plus every tensor outside the layers, is loaded into one dict in fp32 before
  anything is computed (for Llama-3.2-1B that is the whole model: 4.9 GB of fp32 for a 2.5 GB file);
- up to 10 two-dimensional tensors are picked: 3 per name group (embed, attention, ffn, other) with
  `linspace` over the globally sorted names, topped up at random with a fixed seed;
- per tensor, 15 probes one at a time: a seeded Gaussian vector `x0`, and `x0` plus Gaussian, low-frequency
  FFT, high-frequency FFT, structured (sinusoidal) or FGSM-style noise, 3 probes of each kind;
- loss `‖x Wᵀ‖`, autograd backward with respect to `W` (a full-size gradient per probe), then mean, std,
  norm, skewness and kurtosis of the gradient, the last two with `scipy.stats` on a NumPy copy;
- the five statistics are averaged over the probes and the tensors of each of the groups embed, attention
  and ffn: 15 features, printed as JSON.

Deliberate differences from the published scripts: it runs on the CPU (their CUDA device string is an
option here, `--device`), and it reads a sharded folder directly instead of needing the shards merged into
one file first; merging would only add a full write of the checkpoint to its cost. How the published code
arranges its 15 numbers is our reading of the description (5 statistics x 3 groups); the arrangement does
not change the cost. The gradient's norm is `‖x‖` whatever `W` is (the gradient of `‖W x‖` is `u x^T` with unit `u`),
which this script does not correct: it reproduces the recipe, weaknesses included.

Usage:
    python bench/tensorguard_reference.py <checkpoint folder or .safetensors file> [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from scipy import stats

MAX_LAYER = 15
N_TENSORS = 10
PER_GROUP = 3
N_PROBES = 15
SEED = 42
NOISE_SCALE = 0.1
GROUPS = ("embed", "attention", "ffn", "other")
FEATURE_GROUPS = ("embed", "attention", "ffn")
STATS = ("mean", "std", "norm", "skew", "kurtosis")
NOISE_KINDS = ("gaussian", "low_freq", "high_freq", "structured", "fgsm")

_LAYER_RE = re.compile(r"\.(?:layers|h|blocks|layer)\.(\d+)\.")


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the index's shards, else every `*.safetensors` of the folder."""
    if path.is_file():
        return [path]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"error: no *.safetensors under {path}; point at a checkpoint folder or file")
    return files


def layer_of(name: str) -> int | None:
    match = _LAYER_RE.search(name)
    return int(match.group(1)) if match else None


def load_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Load every tensor of layers <= 15 and every non-layer tensor, in fp32, into one dict (as the scripts do)."""
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                layer = layer_of(name)
                if layer is None or layer <= MAX_LAYER:
                    tensors[name] = f.get_tensor(name).to(torch.float32)
    return tensors


def group_of(name: str) -> str:
    lowered = name.lower()
    if "embed" in lowered or "wte" in lowered or "wpe" in lowered:
        return "embed"
    if "attn" in lowered or "attention" in lowered:
        return "attention"
    if "mlp" in lowered or "ffn" in lowered or "feed_forward" in lowered:
        return "ffn"
    return "other"


def select_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Pick up to 10 two-dimensional tensors: 3 per group by `linspace` over sorted names, then a seeded top-up."""
    names = sorted(name for name, t in tensors.items() if t.dim() == 2)
    chosen: list[str] = []
    for group in GROUPS:
        members = [name for name in names if group_of(name) == group]
        if not members:
            continue
        picks = np.linspace(0, len(members) - 1, min(PER_GROUP, len(members))).astype(int)
        chosen += [members[i] for i in dict.fromkeys(picks.tolist())]
    chosen = chosen[:N_TENSORS]
    rest = [name for name in names if name not in chosen]
    chosen += random.Random(SEED).sample(rest, min(N_TENSORS - len(chosen), len(rest)))
    return chosen


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.std().clamp_min(1e-12)


def _fft_noise(n: int, gen: torch.Generator, low: bool) -> torch.Tensor:
    spectrum = torch.fft.rfft(torch.randn(n, generator=gen))
    cut = max(1, spectrum.numel() // 10)
    if low:
        spectrum[cut:] = 0  # keep the lowest 10% of frequencies
    else:
        spectrum[: spectrum.numel() - cut] = 0  # keep the highest 10%
    return _unit(torch.fft.irfft(spectrum, n=n))


def _noise(kind: str, x0: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    n = x0.numel()
    gen = torch.Generator().manual_seed(SEED + 1000 + k)
    if kind == "gaussian":
        return torch.randn(n, generator=gen)
    if kind in ("low_freq", "high_freq"):
        return _fft_noise(n, gen, low=kind == "low_freq")
    if kind == "structured":
        i = torch.arange(n, dtype=torch.float32)
        return _unit(torch.sin(2 * torch.pi * (k + 1) * i / n) + torch.sign(torch.sin(2 * torch.pi * i / 64)))
    # FGSM: the sign of the loss gradient with respect to the input, one more forward and backward pass.
    x = x0.clone().requires_grad_(True)
    torch.linalg.vector_norm(x @ weight.detach().T).backward()
    return x.grad.sign()


def gradient_stats(weight: torch.Tensor, x: torch.Tensor) -> list[float]:
    """Backpropagate `‖x Wᵀ‖` to `W` and summarise the gradient: mean, std, norm, skewness, kurtosis."""
    weight.grad = None
    loss = torch.linalg.vector_norm(x @ weight.T)
    loss.backward()
    grad = weight.grad
    flat = grad.detach().cpu().numpy().ravel()
    row = [
        grad.mean().item(),
        grad.std().item(),
        torch.linalg.vector_norm(grad).item(),
        float(stats.skew(flat)),
        float(stats.kurtosis(flat)),
    ]
    weight.grad = None
    return row


def probe_tensor(weight: torch.Tensor, device: str) -> np.ndarray:
    """Run the 15 probes on one tensor, one at a time; returns a (15, 5) array of gradient statistics."""
    weight = weight.to(device).requires_grad_(True)
    gen = torch.Generator().manual_seed(SEED)
    x0 = torch.randn(weight.shape[1], generator=gen)
    rows = []
    for k in range(N_PROBES):
        if k == 0:
            x = x0
        else:
            kind = NOISE_KINDS[(k - 1) % len(NOISE_KINDS)]
            x = x0 + NOISE_SCALE * _noise(kind, x0.to(device), weight, k).cpu()
        rows.append(gradient_stats(weight, x.to(device)))
    weight.requires_grad_(False)
    return np.asarray(rows)


def fingerprint(path: Path, device: str = "cpu") -> dict:
    """Compute the 15 TensorGuard features of a checkpoint; also returns the tensors used and the timings."""
    t0 = time.perf_counter()
    tensors = load_tensors(checkpoint_files(path))
    t_load = time.perf_counter() - t0
    selected = select_tensors(tensors)
    per_group: dict[str, list[np.ndarray]] = {g: [] for g in GROUPS}
    for name in selected:
        per_group[group_of(name)].append(probe_tensor(tensors[name], device).mean(axis=0))
    features = {}
    for group in FEATURE_GROUPS:
        rows = per_group[group]
        means = np.mean(rows, axis=0) if rows else np.full(len(STATS), np.nan)
        features.update({f"{group}.{stat}": float(v) for stat, v in zip(STATS, means)})
    return {
        "features": features,
        "tensors": selected,
        "loaded_tensors": len(tensors),
        "loaded_fp32_gb": sum(t.numel() for t in tensors.values()) * 4 / 1e9,
        "load_s": t_load,
        "total_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (sharded or not) or one .safetensors file")
    parser.add_argument("--device", default="cpu", help="torch device for the probes (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    print(json.dumps(fingerprint(args.checkpoint, args.device), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
