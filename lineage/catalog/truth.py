"""Ground truth of the catalog's merges: their parents and weights, for scoring merge attribution."""

from __future__ import annotations

from pathlib import Path

from lineage.catalog.recipe import MERGE_OPS, Recipe
from lineage.catalog.save import read_marker
from lineage.errors import CatalogError


def merge_truth(recipe: Recipe, models_dir: str | Path | None = None) -> dict[str, list[tuple[str, float]]]:
    """Ground truth of every merge: its parents and their weights, for scoring merge attribution.

    Args:
        recipe: a loaded recipe (full or mini).
        models_dir: the built catalog's folder; needed only for ``merge_metric_weighted`` merges, whose
            weights are computed at build time from validation losses and recorded in the model's marker.

    Returns:
        ``{merge name: [(parent, weight), ...]}`` in the recipe's parent order. Weights are as the merge
        method used them (normalised for linear, SLERP's ``(1 - t, t)``, task-vector scales otherwise).

    Raises:
        CatalogError: a metric-weighted merge's weights are asked for but the model is not built.

    Example:
        >>> from lineage.catalog.recipe_toml import load_recipe
        >>> merge_truth(load_recipe())["llama-8b-merge-linear"]
        [('llama-8b-ft-tests', 0.5), ('llama-8b-ft-email', 0.5)]
    """
    truth: dict[str, list[tuple[str, float]]] = {}
    for e in recipe.entries:
        if e.op not in MERGE_OPS:
            continue
        weights = e.weights
        if e.op == "merge_metric_weighted":
            if models_dir is None:
                raise CatalogError(f"{e.name}: metric-weighted merge weights are set at build time; pass the "
                                   "built catalog folder as models_dir")
            marker = read_marker(Path(models_dir) / e.name)
            if marker is None:
                raise CatalogError(f"{e.name}: not built in {models_dir}; run `lineage catalog build` first")
            weights = tuple(marker["info"]["weights"])
        elif e.op == "merge_linear":
            total = sum(weights)
            weights = tuple(w / total for w in weights)
        truth[e.name] = list(zip(e.parents, (float(w) for w in weights), strict=True))
    return truth
