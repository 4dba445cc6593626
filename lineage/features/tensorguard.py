"""The TensorGuard paper's 15 summary features, kept so results stay comparable with the published ones.

Selection follows the paper: two-dimensional tensors of layers 0-15 and the non-layer matrices, grouped by
name (embedding, attention, FFN, other), up to 3 per group picked evenly (`linspace`) over each group's
sorted names, topped up at random (seeded) to 10. Each selected tensor's gradient statistics (see
`lineage.probe.engine`) are averaged into `global_*`, and per group into `{attention,ffn,embedding}_*`.
The gradient of `||W x||` is the rank-one `u x^T` with `u = W x / ||W x||`, so its norm is `||x||` whatever
`W` is: the gradient's norm and std depend only on shapes and probes; the features are here
for comparability, not identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from lineage.arch.groups import TENSOR_GROUPS

_LAYER_INDEX = re.compile(r"layers\.(\d+)\.")
STAT_NAMES = ("mean", "std", "norm", "skewness", "kurtosis")
#: The paper's 15 features, in its order (`total_params` is kept aside: the paper does not classify on it).
TENSORGUARD_FEATURES: tuple[str, ...] = (
    "global_mean",
    "global_std",
    "global_norm",
    "global_skewness",
    "global_kurtosis",
    "attention_mean",
    "attention_std",
    "attention_norm",
    "ffn_mean",
    "ffn_std",
    "ffn_norm",
    "embedding_mean",
    "embedding_std",
    "embedding_norm",
    "num_layers",
)


def tensor_group(name: str) -> str:
    """The paper's name group of a tensor: embedding, attention, ffn or other (`lineage.arch.groups`)."""
    lowered = name.lower()
    return next((group for group, words in TENSOR_GROUPS if any(w in lowered for w in words)), "other")


def select_tensors(shapes: dict[str, tuple[int, ...]], *, max_layer: int, count: int, seed: int) -> list[str]:
    """The tensors the recipe probes.

    Args:
        shapes: tensor name -> shape for the whole checkpoint.
        max_layer: highest layer index considered (15 in the paper).
        count: how many tensors at most (10 in the paper).
        seed: seed of the random top-up.

    Returns:
        Selected names, sorted.
    """
    eligible = []
    for name, shape in sorted(shapes.items()):
        if len(shape) != 2 or min(shape) < 2:
            continue
        m = _LAYER_INDEX.search(name)
        if m and int(m.group(1)) > max_layer:
            continue
        eligible.append(name)
    chosen: list[str] = []
    for group in ("embedding", "attention", "ffn", "other"):
        members = [n for n in eligible if tensor_group(n) == group]
        if members:
            picks = np.unique(np.linspace(0, len(members) - 1, min(3, len(members))).round().astype(int))
            chosen.extend(members[i] for i in picks)
    chosen = chosen[:count]  # groups in the paper's order: "other" gives way first
    rest = [n for n in eligible if n not in chosen]
    if len(chosen) < count and rest:
        rng = np.random.default_rng(seed)
        extra = rng.choice(len(rest), size=min(count - len(chosen), len(rest)), replace=False)
        chosen.extend(rest[i] for i in sorted(extra))
    return sorted(chosen)


def aggregate(per_tensor: Iterable[tuple[str, np.ndarray]], num_layers: int, num_parameters: int) -> dict[str, float]:
    """The 15 features (plus `total_params`) from per-tensor gradient statistics.

    Args:
        per_tensor: (tensor name, stats [5]) for each selected tensor.
        num_layers: the model's layer count.
        num_parameters: the model's parameter count.
    """
    rows = list(per_tensor)
    features: dict[str, float] = {}
    if rows:
        stats = np.stack([s for _, s in rows])
        for i, stat in enumerate(STAT_NAMES):
            features[f"global_{stat}"] = float(stats[:, i].mean())
    else:
        features.update({f"global_{stat}": 0.0 for stat in STAT_NAMES})
    for group in ("attention", "ffn", "embedding"):
        members = [s for n, s in rows if tensor_group(n) == group]
        for i, stat in enumerate(STAT_NAMES[:3]):
            features[f"{group}_{stat}"] = float(np.mean([s[i] for s in members])) if members else 0.0
    features["num_layers"] = float(num_layers)
    features["total_params"] = float(num_parameters)
    assert set(TENSORGUARD_FEATURES) <= set(features)
    return features
