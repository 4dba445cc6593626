"""The report's pictures: a 2-D map of all models and a heat-map of their distances (PNG, matplotlib Agg).

Every point of the map is labelled (models at one place share a label listing them), with axes, so a
reviewer can name every dot; an interactive map would add a JavaScript library to a page meant to be
mailed and archived alone, for what the verdicts table above it already says.

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
    legend: str = "family",
) -> Path:
    """The 2-D map: one dot per model coloured by family, references as stars under the dots, misses ringed
    in red, axes drawn, and every point labelled.

    Models at (almost) the same place (a derivative on top of its base: a cast, a disguise that keeps the
    sketches) share one label listing them all, so none hides under another's star.
    """
    plt = _pyplot()
    colours = _palette([str(f) for f in families])
    fig, ax = plt.subplots(figsize=(13, 10) if len(names) > 20 else (10, 7.5), dpi=110)
    fam, base = np.asarray([str(f) for f in families], dtype=object), np.asarray(is_base, dtype=bool)
    for family, colour in colours.items():
        star = (fam == family) & base
        ax.scatter(coords[star, 0], coords[star, 1], s=260, marker="*", color=colour, edgecolors="black",
                   linewidths=0.8, zorder=2)  # fmt: skip
        mask = (fam == family) & ~base
        ax.scatter(coords[mask, 0], coords[mask, 1], s=30, color=colour, label=family, edgecolors="white",
                   linewidths=0.6, zorder=3)  # fmt: skip
    if wrong is not None and np.any(wrong):
        miss = np.asarray(wrong, dtype=bool)
        ax.scatter(coords[miss, 0], coords[miss, 1], s=110, facecolors="none", edgecolors="red", linewidths=1.3,
                   label="verdict differs from the label", zorder=4)  # fmt: skip
    ax.set_title(title or "Models by family (stars: references)")
    ax.set_xlabel("axis 1 (distance-preserving embedding)")
    ax.set_ylabel("axis 2")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.margins(0.15)
    ax.legend(loc="best", fontsize=8, frameon=False, title=legend, title_fontsize=8)
    _label_points(ax, point_labels(coords, names, is_base), coords, base)
    return _save(fig, path)


_FONT = 6.5  # points
_RADII = (8, 14, 26, 42, 64, 90)  # pixels from the point
_ANGLES = np.deg2rad([30, -30, 150, -150, 90, -90, 0, 180])


def _label_points(  # noqa: ANN001 - a matplotlib Axes
    ax, labels: list[tuple[tuple[float, float], str]], coords: np.ndarray, is_base: np.ndarray
) -> None:
    """Place each label near its point where it overlaps no label placed before and no dot (greedy, in
    pixels: nearest free spot on rings around the point, a thin leader line when it had to move away)."""
    ax.autoscale_view()
    to_px = ax.transData.transform
    dpi = ax.figure.dpi
    char_w, line_h = 0.55 * _FONT * dpi / 72, 1.3 * _FONT * dpi / 72
    sizes = np.where(np.asarray(is_base, dtype=bool), 10.0, 3.5)  # a star's half-width, a dot's, in pixels
    dots = [(x - r, y - r, x + r, y + r) for (x, y), r in zip(to_px(np.asarray(coords, dtype=float)), sizes)]
    placed: list[tuple[float, float, float, float]] = []
    for (x, y), text in labels:
        px, py = to_px((x, y))
        lines = text.split("\n")
        w, h = char_w * max(len(line) for line in lines), line_h * len(lines)
        best = None
        for r in _RADII:
            for a in _ANGLES:
                ox, oy = r * np.cos(a), r * np.sin(a)
                x0 = px + ox if ox >= 0 else px + ox - w
                box = (x0, py + oy - h / 2, x0 + w, py + oy + h / 2)
                cost = sum(_overlap(box, b) for b in placed) + sum(_overlap(box, d) for d in dots)
                if best is None or cost < best[0]:
                    best = (cost, ox, oy, box)
            if best[0] == 0:
                break
        _, ox, oy, box = best
        placed.append(box)
        lead = {"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if abs(ox) + abs(oy) > 2 * _RADII[1] else None
        ax.annotate(text, (x, y), xytext=(ox * 72 / dpi, oy * 72 / dpi), textcoords="offset points",
                    ha="left" if ox >= 0 else "right", va="center", fontsize=_FONT, zorder=5,
                    arrowprops=lead)  # fmt: skip


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The area two boxes `(x0, y0, x1, y1)` share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def point_labels(
    coords: np.ndarray, names: Sequence[str], is_base: Sequence[bool], tol: float = 0.015, most: int = 12
) -> list[tuple[tuple[float, float], str]]:
    """One label per place: the names of the models within `tol` (of the map's extent) of each other, the
    references first, one per line, at most `most` (then `+N more`, all in the verdicts table above)."""
    coords = np.asarray(coords, dtype=float)
    if len(coords) == 0:
        return []
    extent = float(np.ptp(coords, axis=0).max()) or 1.0
    groups: list[list[int]] = []
    for i in np.lexsort((np.asarray(names, dtype=object).astype(str), ~np.asarray(is_base, dtype=bool))):
        for group in groups:
            if np.linalg.norm(coords[group[0]] - coords[i]) <= tol * extent:
                group.append(int(i))
                break
        else:
            groups.append([int(i)])
    out = []
    for group in groups:
        shown = [names[i] for i in group[:most]]
        more = f" +{len(group) - most} more" if len(group) > most else ""
        out.append(((float(coords[group[0], 0]), float(coords[group[0], 1])), "\n".join(shown) + more))
    return out


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
