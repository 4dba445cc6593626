"""The repository recipe's content and the recipe loader's validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lineage.catalog import Recipe, load_recipe, merge_truth
from lineage.catalog.recipe import MERGE_OPS
from lineage.errors import CatalogError


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe()


def test_counts_per_role_and_family(recipe: Recipe) -> None:
    roles = Counter(e.role for e in recipe.entries)
    assert roles == {"base": 8, "derivative": 50, "outsider": 3}
    families = Counter(e.family for e in recipe.entries if e.role == "derivative")
    assert families == {"llama": 22, "qwen": 13, "mistral": 6, "gemma": 5, "phi": 4}
    archs = Counter(e.shape.arch for e in recipe.entries if e.role == "base")
    assert archs == {"llama": 3, "qwen2": 2, "gemma3": 1, "phi3": 1, "mistral": 1}
    assert {e.shape.arch for e in recipe.entries if e.role == "outsider"} == {"gpt_neox"}


def test_every_derivation_kind_is_used(recipe: Recipe) -> None:
    from lineage.catalog.recipe import DERIVATION_OPS

    assert {e.op for e in recipe.entries if e.role == "derivative"} == set(DERIVATION_OPS)


def test_shape_twins_differ_only_in_what_shapes_cannot_show(recipe: Recipe) -> None:
    llama, mistral = recipe["llama-8b"], recipe["mistral-7b"]
    assert {k: v for k, v in vars(llama.shape).items() if k != "arch"} == {
        k: v for k, v in vars(mistral.shape).items() if k != "arch"}
    fl, fm = recipe.families[llama.family], recipe.families[mistral.family]
    assert fl.vocab == fm.vocab
    assert (fl.tokenizer, fl.sources, fl.seed) != (fm.tokenizer, fm.sources, fm.seed)
    assert llama.seed != mistral.seed


def test_disguises_cover_several_families(recipe: Recipe) -> None:
    disguised = {e.family for e in recipe.entries if e.op.startswith("disguise_")}
    assert {"llama", "qwen", "phi", "gemma", "mistral"} <= disguised


def test_merge_truth_gives_parents_and_weights(recipe: Recipe) -> None:
    with pytest.raises(CatalogError, match="models_dir"):
        merge_truth(recipe)
    sub = recipe.select("mini")
    truth = merge_truth(sub)
    assert truth == {"llama-8b-merge-ta": [("llama-8b-ft-email", 0.7), ("llama-8b-ft-asyncio", 0.4)]}
    merges = [e for e in recipe.entries if e.op in MERGE_OPS]
    assert len(merges) >= 9
    for e in merges:
        siblings = {recipe[p].base for p in e.parents}
        assert siblings == {e.base}  # merges combine fine-tunes of one base


def test_mini_subset_is_closed_and_capped(recipe: Recipe) -> None:
    mini = recipe.select("mini")
    names = set(mini.names())
    assert all(set(e.parents) <= names for e in mini.entries)
    assert {"llama-8b", "mistral-7b"} <= names
    assert any(e.role == "outsider" for e in mini.entries)
    assert any(e.op.startswith("merge_") for e in mini.entries)
    assert any(e.op.startswith("disguise_") for e in mini.entries)
    assert all(e.steps <= mini.mini_steps for e in mini.entries)


def test_entry_hash_follows_parents_and_seed(recipe: Recipe) -> None:
    h = recipe.entry_hash("llama-8b-merge-ta")
    assert h == load_recipe().entry_hash("llama-8b-merge-ta")
    assert recipe.with_seed(123).entry_hash("llama-8b-merge-ta") != h
    assert recipe.select("mini").entry_hash("llama-8b-ft-email") != recipe.entry_hash("llama-8b-ft-email")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('op = "finetune"', 'op = "fine_tune"'), "unknown operation"),
        (('parents = ["tiny-ft-a", "tiny-ft-b"]', 'parents = ["tiny-ft-a", "nope"]'), "parent"),
        (("weights = [0.6, 0.4]", "weights = [0.6]"), "one weight per parent"),
        (('params = { density = 0.5 }', 'params = { densty = 0.5 }'), "densty"),
        (('tokenizer = "byte_level"', 'tokenizer = "wordpiece"'), "tokenizer"),
        (("heads = 4, kv_heads = 2", "heads = 4, kv_heads = 3"), "heads"),
    ],
)
def test_invalid_recipes_raise_catalog_error(tiny_recipe: Path, edit: tuple[str, str], message: str) -> None:
    text = tiny_recipe.read_text()
    assert edit[0] in text
    tiny_recipe.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(CatalogError, match=message):
        load_recipe(tiny_recipe)


def test_missing_recipe_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="--recipe"):
        load_recipe(tmp_path / "absent.toml")
