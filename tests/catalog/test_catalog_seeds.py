"""The catalog seed: another ``--seed`` redraws every model of the recipe (the held-out catalog), same structure."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lineage.catalog import BuildOptions, build_catalog, load_recipe
from lineage.catalog.derive import effective_seed, text_seed
from lineage.catalog.recipe_toml import default_recipe_path

pytestmark = pytest.mark.slow


def _quick_mini_recipe(tmp_path: Path) -> Path:
    """The repository recipe with its ``mini`` subset cut to 2 steps and a small text budget (same models)."""
    text = default_recipe_path().read_text(encoding="utf-8")
    for old, new in (("max_steps = 30", "max_steps = 2"), ("max_chars = 150000", "max_chars = 30000")):
        assert old in text  # the [mini] table this test shrinks
        text = text.replace(old, new)
    path = tmp_path / "recipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def _structure(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_entry_draws_its_own_seeds_from_the_catalog_seed() -> None:
    recipe = load_recipe()
    for seed in (0, 1):
        seeds = [effective_seed(seed, e) for e in recipe.entries]
        assert len(set(seeds)) == len(seeds)  # twins and bases never share a draw
    assert all(effective_seed(0, e) != effective_seed(1, e) for e in recipe.entries)
    family_seeds = [f.seed for f in recipe.families.values()]
    assert [text_seed(0, s) for s in family_seeds] == family_seeds  # seed 0: the recipe's own text order
    assert all(text_seed(1, s) != s for s in family_seeds)


def test_another_catalog_seed_changes_every_model_of_the_mini_recipe(tmp_path: Path) -> None:
    recipe = _quick_mini_recipe(tmp_path)
    manifests = [build_catalog(BuildOptions(size="mini", recipe=recipe, out_dir=tmp_path / f"seed{s}", seed=s))
                 for s in (0, 1)]
    rows = [_structure(m) for m in manifests]
    assert rows[0] == rows[1]  # same recipe structure: names, roles, families, parents, declarations
    assert {r["role"] for r in rows[0]} == {"base", "derivative", "outsider", "independent"}
    for row in rows[0]:
        a, b = (_tensors(m.parent / row["path"]) for m in manifests)
        assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
        equal = [k for k in a if torch.equal(a[k], b[k])]
        assert equal == [], (row["name"], equal)
        # Document order follows the catalog seed too, hence the family tokenizers.
        tokenizers = [(m.parent / row["path"] / "tokenizer.json").read_bytes() for m in manifests]
        assert tokenizers[0] != tokenizers[1], row["name"]
