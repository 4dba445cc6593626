"""The repository recipe's content and the recipe loader's validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lineage.catalog import Recipe, load_recipe, merge_truth
from lineage.catalog.declare import expected_outcome, hub_id
from lineage.catalog.manifest import catalog_rows
from lineage.catalog.recipe import MERGE_OPS
from lineage.errors import CatalogError


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return load_recipe()


def test_counts_per_role_and_family(recipe: Recipe) -> None:
    roles = Counter(e.role for e in recipe.entries)
    assert roles == {"base": 8, "derivative": 59, "outsider": 3, "independent": 5}
    families = Counter(e.family for e in recipe.entries if e.role == "derivative")
    assert families == {"llama": 27, "qwen": 15, "mistral": 6, "gemma": 5, "phi": 6}
    archs = Counter(e.shape.arch for e in recipe.entries if e.role == "base")
    assert archs == {"llama": 3, "qwen2": 2, "gemma3": 1, "phi3": 1, "mistral": 1}
    assert {e.shape.arch for e in recipe.entries if e.role == "outsider"} == {"gpt_neox"}


def test_every_derivation_kind_is_used(recipe: Recipe) -> None:
    from lineage.catalog.recipe import DERIVATION_OPS

    assert {e.op for e in recipe.entries if e.role == "derivative"} == set(DERIVATION_OPS)


def test_independents_share_a_family_tokenizer_and_descend_from_no_reference(recipe: Recipe) -> None:
    independents = [e for e in recipe.entries if e.role == "independent"]
    assert Counter(e.derivation for e in independents) == {
        "independent_same_data": 3, "independent_other_data": 1, "finetune_of_independent": 1}
    assert all(e.base == "" for e in independents)
    for twin, base in (("llama-1b-twin", "llama-1b"), ("qwen-0.5b-twin", "qwen-0.5b"), ("llama-8b-twin", "llama-8b")):
        t, b = recipe[twin], recipe[base]
        assert (t.shape, t.family, t.data_family, t.steps) == (b.shape, b.family, b.data_family, b.steps)
        assert t.seed != b.seed and t.from_scratch
    other = recipe["llama-1b-qwen-data"]
    assert (other.family, other.data_family) == ("llama", "qwen")
    ft = recipe["llama-1b-twin-ft-email"]
    assert ft.parents == ("llama-1b-twin",) and ft.op == "finetune" and not ft.from_scratch


def test_declarations_cover_every_verify_outcome(recipe: Recipe) -> None:
    def outcomes(r: Recipe) -> Counter:
        rows = catalog_rows(r, Path("models"), Path("manifest.csv"))
        lineage_of = {row.hub_id: row.base for row in rows}
        return Counter(expected_outcome(role=row.role, base=row.base, declared=row.declared.split(";") if
                                        row.declared else [], lineage_of=lineage_of) for row in rows)

    full = outcomes(recipe)
    assert full["consistent"] >= 3 and full["contradicted"] >= 3 and full["undeclared"] >= 3
    assert full["unverifiable"] >= 1
    assert set(outcomes(recipe.select("mini"))) >= {"consistent", "contradicted", "undeclared", "unverifiable"}
    declared = [e for e in recipe.entries if e.declared is not None]
    assert any(e.declared.true_parents for e in declared if e.op in MERGE_OPS)  # a merge with its mergekit config
    false = [e for e in declared if e.declared.base_models and not e.declared.true_parents and e.role == "derivative"]
    families = {recipe[m.split("/")[1]].family if m.startswith("lineage-catalog/") else "?" for e in false
                for m in e.declared.base_models}
    assert "?" in families and families - {"?"}  # ids from outside the catalog, and wrong catalog bases
    assert any(recipe[m.split("/")[1]].family == e.family for e in false for m in e.declared.base_models
               if m.startswith("lineage-catalog/"))  # another size of the same family


def test_expected_outcome_rule() -> None:
    lineage_of = {hub_id("a"): "a", hub_id("a-ft"): "a", hub_id("b"): "b", hub_id("twin"): ""}
    cases = [
        (("derivative", "a", [hub_id("a")]), "consistent"),
        (("derivative", "a", [hub_id("a-ft"), hub_id("a")]), "consistent"),
        (("derivative", "a", [hub_id("b")]), "contradicted"),
        (("derivative", "a", [hub_id("a"), hub_id("b")]), "consistent"),  # one declared lineage is right
        (("derivative", "a", [hub_id("b"), hub_id("b")]), "contradicted"),
        (("independent", "", [hub_id("a")]), "contradicted"),
        (("derivative", "a", []), "undeclared"),
        (("independent", "", []), "consistent"),
        (("derivative", "a", ["org/elsewhere"]), "unverifiable"),
        (("derivative", "a", [hub_id("twin")]), "unverifiable"),
        (("base", "a", []), None),
    ]
    for (role, base, declared), want in cases:
        assert expected_outcome(role=role, base=base, declared=declared, lineage_of=lineage_of) == want, (
            role, base, declared)


def test_declarations_stay_out_of_the_hash(tiny_recipe: Path) -> None:
    before = load_recipe(tiny_recipe)
    text = tiny_recipe.read_text()
    edited = text.replace('seed = 3\n', 'seed = 3\ndeclare = ["tiny-outsider"]\n', 1)
    assert edited != text
    tiny_recipe.write_text(edited)
    after = load_recipe(tiny_recipe)
    assert after["tiny-ft-a"].declared is not None and before["tiny-ft-a"].declared is None
    assert after.entry_hash("tiny-ft-a") == before.entry_hash("tiny-ft-a")  # a card edit retrains nothing


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
        (("seed = 5\n", 'seed = 5\ndeclare = ["nope"]\n'), "neither a catalog model nor a hub id"),
        (("seed = 5\n", 'seed = 5\ndeclare = "parents"\nrelation = "finetune"\n'), "only for a merge"),
        (("seed = 5\n", 'seed = 5\ndeclare = "parents"\nrelation = "forked"\n'), "base_model_relation"),
        (("seed = 1\nlayout", 'seed = 1\ndeclare = ["tiny-outsider"]\nlayout'), "declares no base_model"),
        (("seed = 2\nshape", 'seed = 2\nrelation = "merge"\nshape'), "needs a 'declare'"),
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
