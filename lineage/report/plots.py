"""The report's pictures: a 2-D map of all models and a heat-map of their distances (PNG, matplotlib Agg).

The map embeds the full pairwise distance matrix, so it shows what the method measured, whatever the
method. Below `UMAP_MIN_MODELS` models it is classical MDS (PCA of the double-centred squared distances:
for Euclidean distances, exactly PCA of the vectors), which is linear, deterministic and instant, and with
so few points shows all there is; UMAP's neighbour graph (15 neighbours) would span several families
anyway. From `UMAP_MIN_MODELS` up it is UMAP on the precomputed distances, which keeps local neighbourhoods
(derivatives around their base) readable among thousands. UMAP's first call compiles (~30 s).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

UMAP_MIN_MODELS = 100
_MAX_TICK_LABELS = 100


def classical_mds(matrix: np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates `[n, dims]` whose distances best match `matrix` (Torgerson's classical scaling)."""
    d = np.asarray(matrix, dtype=np.float64)
    n = len(d)
    if n == 0:
        return np.zeros((0, dims))
    centre = np.eye(n) - np.full((n, n), 1.0 / n)
    gram = -0.5 * centre @ (d**2) @ centre
    values, vectors = np.linalg.eigh((gram + gram.T) / 2)
    order = np.argsort(values)[::-1][:dims]
    coords = vectors[:, order] * np.sqrt(np.clip(values[order], 0.0, None))
    if coords.shape[1] < dims:
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    # Fix each axis' sign so the same data always gives the same picture.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(dims)])
    return coords * np.where(signs == 0, 1.0, signs)


def embed_2d(matrix: np.ndarray, how: str = "auto", random_state: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of the models of a distance matrix.

    Args:
        matrix: `[n, n]` symmetric distances.
        how: "auto" (MDS below `UMAP_MIN_MODELS` models, else UMAP), "pca" or "umap".
        random_state: UMAP seed.

    Returns:
        `(coords [n, 2], "pca" or "umap")`.
    """
    n = len(matrix)
    if how == "pca" or (how == "auto" and n < UMAP_MIN_MODELS) or n < 4:
        return classical_mds(matrix), "pca"
    import umap  # lazy: heavy import, and only the map needs it

    d = np.asarray(matrix, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", "no inverse_transform"
        reducer = umap.UMAP(n_components=2, metric="precomputed", n_neighbors=min(15, n - 1), random_state=random_state)
        return reducer.fit_transform((d + d.T) / 2), "umap"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _palette(families: Sequence[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(set(families)) <= 10 else "tab20")
    return {f: cmap(i % cmap.N) for i, f in enumerate(sorted(set(families)))}


def plot_map(
    coords: np.ndarray,
    names: Sequence[str],
    families: Sequence[str],
    is_base: Sequence[bool],
    path: str | Path,
    wrong: Sequence[bool] | None = None,
    title: str = "",
) -> Path:
    """The 2-D map: one dot per model coloured by family, bases as labelled stars, misses ringed in red."""
    plt = _pyplot()
    colours = _palette(families)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    fam, base = np.asarray(families, dtype=object), np.asarray(is_base, dtype=bool)
    for family, colour in colours.items():
        mask = (fam == family) & ~base
        ax.scatter(coords[mask, 0], coords[mask, 1], s=28, color=colour, label=family, alpha=0.85, linewidths=0)
        star = (fam == family) & base
        ax.scatter(coords[star, 0], coords[star, 1], s=220, marker="*", color=colour, edgecolors="black")
    if wrong is not None and np.any(wrong):
        miss = np.asarray(wrong, dtype=bool)
        ax.scatter(
            coords[miss, 0],
            coords[miss, 1],
            s=90,
            facecolors="none",
            edgecolors="red",
            linewidths=1.2,
            label="misclassified",
        )
    for i in np.flatnonzero(base):
        ax.annotate(names[i], coords[i], textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_title(title or "Models by family (stars: known bases)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, frameon=False)
    return _save(fig, path)


def plot_heatmap(matrix: np.ndarray, names: Sequence[str], families: Sequence[str], path: str | Path) -> Path:
    """The distance matrix as a heat-map, models grouped by family, family blocks outlined."""
    plt = _pyplot()
    order = sorted(range(len(names)), key=lambda i: (str(families[i]), names[i]))
    m = np.asarray(matrix, dtype=float)[np.ix_(order, order)]
    size = min(14.0, 4.0 + 0.12 * len(names))
    fig, ax = plt.subplots(figsize=(size + 1.5, size), dpi=110)
    image = ax.imshow(m, cmap="viridis_r", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="distance")
    fam_sorted = [str(families[i]) for i in order]
    edges = [i for i in range(1, len(order)) if fam_sorted[i] != fam_sorted[i - 1]]
    for e in edges:
        ax.axhline(e - 0.5, color="white", linewidth=0.8)
        ax.axvline(e - 0.5, color="white", linewidth=0.8)
    if len(names) <= _MAX_TICK_LABELS:
        labels = [names[i] for i in order]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("Pairwise distances (grouped by family)")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    _pyplot().close(fig)
    return path
