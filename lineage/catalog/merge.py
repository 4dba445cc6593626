"""Model-merging methods, each written from its published definition, one function per method.

``mergekit`` installs next to torch 2.13 (checked with ``pip install --dry-run``), but it would pull
``datasets``/``pyarrow`` into the catalog extra and does not offer metric-weighted averaging; the
definitions are short, so each is implemented here on plain tensors and tested against its definition:

- linear (model soup): ``sum_i w_i x_i / sum_i w_i``;
- task arithmetic (Ilharco et al. 2023): ``b + sum_i w_i (x_i - b)``;
- TIES (Yadav et al. 2023): trim each task vector to its ``density`` largest magnitudes, elect a sign per
  entry from the sum of the weighted trimmed vectors, average (weighted) only the entries that agree;
- DARE (Yu et al. 2024): drop each task-vector entry with probability ``1 - density`` and rescale the
  survivors by ``1 / density``; then sum (DARE-linear) or elect signs as TIES does (DARE-TIES);
- SLERP: spherical interpolation of the two flattened tensors, linear when they are nearly colinear;
- metric-weighted averaging: linear averaging with weights ``softmax(-loss_i / temperature)`` from each
  parent's validation loss.

As in common practice (and mergekit's defaults), TIES normalises by the agreeing weights while task
arithmetic and the DARE variants do not. Merges act tensor by tensor over whole state dicts; DARE's random
masks come from a generator seeded per tensor name, so a merge is reproducible.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import torch

StateDict = dict[str, torch.Tensor]


def linear(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Weighted average ``sum_i w_i x_i / sum_i w_i``."""
    total = sum(weights)
    if abs(total) < 1e-12:
        raise ValueError("linear merge weights sum to zero")
    return sum(w * t for w, t in zip(weights, tensors, strict=True)) / total


def task_arithmetic(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """``base + sum_i w_i (x_i - base)``: add the weighted task vectors to the base."""
    return base + sum(w * (t - base) for w, t in zip(weights, tensors, strict=True))


def trim_magnitude(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``round(density * n)`` entries of largest magnitude, zero the rest (TIES' "trim")."""
    if density >= 1.0:
        return delta
    k = int(round(density * delta.numel()))
    if k <= 0:
        return torch.zeros_like(delta)
    flat = delta.flatten()
    keep = torch.topk(flat.abs(), k, sorted=False).indices
    out = torch.zeros_like(flat)
    out[keep] = flat[keep]
    return out.view_as(delta)


def drop_and_rescale(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability ``density`` and divide the survivors by ``density``."""
    if density >= 1.0:
        return delta
    keep = torch.rand(delta.shape, generator=generator) < density
    return torch.where(keep, delta / density, torch.zeros_like(delta))


def _sign_consensus(weighted: torch.Tensor, weights: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """TIES' elect + disjoint merge over stacked weighted deltas ``[n, ...]``."""
    elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
    agree = (torch.sign(weighted) == elected).to(weighted.dtype)
    mixed = (weighted * agree).sum(0)
    if normalize:
        divisor = (weights * agree).sum(0)
        mixed = mixed / torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return mixed


def ties(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float], *,
         density: float) -> torch.Tensor:
    """TIES-merging: trim, elect sign, disjoint (weight-normalised) mean of the agreeing deltas."""
    deltas = torch.stack([trim_magnitude(t - base, density) for t in tensors])
    w = torch.tensor(list(weights), dtype=deltas.dtype).view(-1, *([1] * base.ndim))
    return base + _sign_consensus(deltas * w, w, normalize=True)


def dare_ties(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float], *, density: float,
              generator: torch.Generator) -> torch.Tensor:
    """DARE-TIES: random drop and rescale, then TIES' sign election (sum of agreeing weighted deltas)."""
    deltas = torch.stack([drop_and_rescale(t - base, density, generator) for t in tensors])
    w = torch.tensor(list(weights), dtype=deltas.dtype).view(-1, *([1] * base.ndim))
    return base + _sign_consensus(deltas * w, w, normalize=False)


def dare_linear(base: torch.Tensor, tensors: Sequence[torch.Tensor], weights: Sequence[float], *, density: float,
                generator: torch.Generator) -> torch.Tensor:
    """DARE-linear: random drop and rescale, then task arithmetic on the sparse deltas."""
    return base + sum(w * drop_and_rescale(t - base, density, generator)
                      for w, t in zip(weights, tensors, strict=True))


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, *, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1) on the angle between their directions.

    The angle comes from the normalised flattened tensors; the result combines the *unnormalised*
    tensors with the SLERP coefficients ``sin((1-t) theta) / sin(theta)`` and ``sin(t theta) / sin(theta)``.
    Nearly colinear tensors (|cos| above ``dot_threshold``) fall back to linear interpolation.
    """
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    if na < 1e-12 or nb < 1e-12:
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    dot = float((a64.flatten() / na) @ (b64.flatten() / nb))
    if abs(dot) > dot_threshold:
        return ((1 - t) * a64 + t * b64).to(a.dtype)
    theta = math.acos(max(-1.0, min(1.0, dot)))
    s0 = math.sin((1 - t) * theta) / math.sin(theta)
    s1 = math.sin(t * theta) / math.sin(theta)
    return (s0 * a64 + s1 * b64).to(a.dtype)


def metric_weights(losses: Sequence[float], *, temperature: float) -> list[float]:
    """``softmax(-loss / temperature)``: lower validation loss, larger weight (weights sum to 1)."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    m = min(losses)
    raw = [math.exp(-(loss - m) / temperature) for loss in losses]
    total = sum(raw)
    return [r / total for r in raw]


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{name}".encode()).digest()[:7], "big")


def merge_state_dicts(method: str, parents: Sequence[StateDict], weights: Sequence[float], *,
                      base: StateDict | None = None, density: float = 1.0, seed: int = 0) -> StateDict:
    """Merge whole state dicts tensor by tensor.

    Args:
        method: ``linear``, ``task_arithmetic``, ``ties``, ``dare_ties``, ``dare_linear`` or ``slerp``
            (for SLERP, ``weights`` is ``(1 - t, t)``).
        parents: the models to merge (same keys and shapes).
        weights: one per parent.
        base: the common base, required by the task-vector methods.
        density: fraction of each task vector kept (TIES, DARE).
        seed: seeds DARE's masks (per tensor, by name).

    Returns:
        The merged state dict (fp32).

    Example:
        >>> merged = merge_state_dicts("linear", [sd_a, sd_b], [0.5, 0.5])
    """
    ops: dict[str, Callable[[str, torch.Tensor | None, list[torch.Tensor]], torch.Tensor]] = {
        "linear": lambda n, b, ts: linear(ts, weights),
        "task_arithmetic": lambda n, b, ts: task_arithmetic(b, ts, weights),
        "ties": lambda n, b, ts: ties(b, ts, weights, density=density),
        "dare_ties": lambda n, b, ts: dare_ties(b, ts, weights, density=density,
                                                generator=torch.Generator().manual_seed(_tensor_seed(seed, n))),
        "dare_linear": lambda n, b, ts: dare_linear(b, ts, weights, density=density,
                                                    generator=torch.Generator().manual_seed(_tensor_seed(seed, n))),
        "slerp": lambda n, b, ts: slerp(weights[1], ts[0], ts[1]),
    }
    if method not in ops:
        raise ValueError(f"unknown merge method {method!r}")
    if method not in ("linear", "slerp") and base is None:
        raise ValueError(f"{method} needs the base model's tensors")
    if len(parents) != len(weights):
        raise ValueError("give one weight per parent")
    keys = list(parents[0])
    for sd in parents[1:]:
        if list(sd) != keys or any(sd[k].shape != parents[0][k].shape for k in keys):
            raise ValueError("merge parents differ in tensor names or shapes; merge siblings of one base")
    merged: StateDict = {}
    for name in keys:
        tensors = [sd[name].float() for sd in parents]
        b = base[name].float() if base is not None else None
        merged[name] = ops[method](name, b, tensors)
    return merged
