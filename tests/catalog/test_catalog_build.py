"""Building catalogs: determinism, resuming, layouts, the manifest, declarations, independents, vocabulary
operations, the CLI, and the repository's mini build."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from lineage.catalog import COLUMNS, BuildOptions, build_catalog, load_recipe, merge_truth
from lineage.catalog.build import write_catalog_manifest
from lineage.catalog.declare import hub_id
from tests.catalog.conftest import TINY_RECIPE

pytestmark = pytest.mark.slow


def _cli_app() -> typer.Typer:
    try:  # the real app, with its error mapping, when every command module imports
        from lineage.cli.app import app

        return app
    except ImportError:  # pragma: no cover - other command groups still under construction
        from lineage.cli import catalog

        app = typer.Typer()
        catalog.register(app)
        app.callback()(lambda: None)
        return app


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".safetensors", ".json") and p.name != "models_manifest.csv"}


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_same_seed_gives_identical_bytes_and_cli_builds(tiny_recipe: Path, tmp_path: Path) -> None:
    events = []
    a = build_catalog(BuildOptions(out_dir=tmp_path / "a", recipe=tiny_recipe), progress=events.append)
    assert [e.action for e in events] == ["built"] * 6 and events[-1].index == events[-1].total == 6
    result = CliRunner().invoke(_cli_app(), ["catalog", "build", "--out", str(tmp_path / "b"), "--recipe",
                                             str(tiny_recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "6 built, 0 up to date" in result.output
    files_a, files_b = _files(a.parent), _files(tmp_path / "b")
    assert any(name.endswith(".safetensors") for name in files_a)
    assert files_a == files_b
    # Another seed gives other weights.
    c = build_catalog(BuildOptions(out_dir=tmp_path / "c", recipe=tiny_recipe, seed=5))
    files_c = _files(c.parent)
    base_a = {k: v for k, v in files_a.items() if k.startswith("tiny-base/") and k.endswith(".safetensors")}
    assert base_a and all(files_c[k] != v for k, v in base_a.items())


def test_rebuild_skips_complete_models_and_redoes_broken_ones(tiny_recipe: Path, tmp_path: Path) -> None:
    options = BuildOptions(out_dir=tmp_path, recipe=tiny_recipe)
    build_catalog(options)
    before = _files(tmp_path)
    (tmp_path / "tiny-rotated" / "catalog_entry.json").unlink()  # as if interrupted before completion
    (tmp_path / "tiny-ft-a.partial").mkdir()
    events = []
    build_catalog(options, progress=events.append)
    assert {e.name: e.action for e in events} == {
        "tiny-base": "skipped", "tiny-outsider": "skipped", "tiny-ft-a": "skipped", "tiny-ft-b": "skipped",
        "tiny-dare": "skipped", "tiny-rotated": "built"}
    assert not (tmp_path / "tiny-ft-a.partial").exists()
    assert _files(tmp_path) == before
    events.clear()
    build_catalog(BuildOptions(out_dir=tmp_path, recipe=tiny_recipe, force=True), progress=events.append)
    assert {e.action for e in events} == {"built"}


def test_layouts_and_manifest_of_tiny_catalog(tiny_recipe: Path, tmp_path: Path) -> None:
    manifest = build_catalog(BuildOptions(out_dir=tmp_path / "models", recipe=tiny_recipe,
                                          manifest=tmp_path / "m.csv", size="mini"))
    rows = {r["name"]: r for r in _rows(manifest)}
    assert set(rows) == {"tiny-base", "tiny-ft-a"}
    assert rows["tiny-base"]["path"] == "models/tiny-base"
    folder = tmp_path / "models" / "tiny-base"
    assert (folder / "model.safetensors.index.json").is_file() and (folder / "tokenizer.json").is_file()
    assert (tmp_path / "models" / "tiny-ft-a" / "model.safetensors").is_file()


def _front_matter(card: Path) -> dict:
    yaml = pytest.importorskip("yaml")
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_mini_catalog_manifest(mini_catalog: Path, tmp_path: Path) -> None:
    rows = _rows(mini_catalog)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(load_recipe().select("mini").names())
    for r in rows:
        folder = mini_catalog.parent / r["path"]
        assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
        assert r["role"] in ("base", "derivative", "outsider", "independent")
        assert r["hub_id"] == hub_id(r["name"])
        if r["role"] == "base":
            assert r["base"] == r["name"] and r["parents"] == "" and r["derivation"] == "base"
        elif r["role"] == "outsider":
            assert r["family"] == "unknown" and r["base"] == "" and r["derivation"] == "outsider"
        elif r["role"] == "independent":
            assert r["base"] == "" and r["derivation"].startswith("independent_")
        else:
            assert r["base"] and r["parents"]
    assert by_name["llama-8b-merge-ta"]["parents"] == "llama-8b-ft-email;llama-8b-ft-asyncio"
    assert by_name["llama-8b-merge-ta"]["derivation"] == "merge_task_arithmetic"
    assert by_name["mistral-7b"]["family"] == "mistral"
    # The manifest follows from the recipe alone: written without building, it is the same file.
    again = write_catalog_manifest(BuildOptions(size="mini", out_dir=mini_catalog.parent,
                                                manifest=mini_catalog.parent / "again.csv"))
    assert again.read_text() == mini_catalog.read_text()


def test_mini_catalog_cards_declare_what_the_manifest_says(mini_catalog: Path) -> None:
    root = mini_catalog.parent
    for r in _rows(mini_catalog):
        card = root / r["path"] / "README.md"
        declared = r["declared"].split(";") if r["declared"] else []
        if not card.is_file():
            assert declared == [], r
            continue
        meta = _front_matter(card)
        base_model = meta.get("base_model", [])
        assert (base_model if isinstance(base_model, list) else [base_model]) == declared, r
        assert meta["base_model_relation"] == ("merge" if r["derivation"].startswith("merge_") else "finetune")
        body = card.read_text().split("---\n", 2)[2]
        assert f"# {r['name']}" in body and "/" not in body  # the body names no model: only the front matter
    assert not (root / "llama-8b-mergelock" / "README.md").exists()  # the undeclared case
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((root / "llama-8b-merge-ta" / "mergekit_config.yml").read_text())
    assert config["merge_method"] == "task_arithmetic" and config["base_model"] == hub_id("llama-8b")
    assert [(m["model"], m["parameters"]["weight"]) for m in config["models"]] == [
        (hub_id("llama-8b-ft-email"), 0.7), (hub_id("llama-8b-ft-asyncio"), 0.4)]


def test_mini_catalog_independent_twin_shares_tokenizer_not_weights(mini_catalog: Path) -> None:
    from safetensors.torch import load_file

    root = mini_catalog.parent
    by_name = {r["name"]: r for r in _rows(mini_catalog)}
    twin, base = by_name["llama-8b-twin"], by_name["llama-8b"]
    assert (twin["family"], twin["role"], twin["base"], twin["derivation"]) == (
        "llama", "independent", "", "independent_same_data")
    tokenizers = [(root / r["path"] / "tokenizer.json").read_bytes() for r in (twin, base)]
    assert tokenizers[0] == tokenizers[1]  # the very same tokenizer.json
    a = load_file(root / twin["path"] / "model.safetensors")
    b: dict[str, torch.Tensor] = {}
    for f in sorted((root / base["path"]).glob("*.safetensors")):
        b.update(load_file(f))
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not any(torch.equal(a[k], b[k]) for k in a if a[k].dim() == 2)


_EXTRA = """
[[independent]]
name = "tiny-twin"
family = "tiny"
shape = {arch = "llama", hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64, vocab = 400, tied = true}
steps = 8
lr = 3e-3
seed = 7
declare = ["tiny-base"]

[[derivative]]
name = "tiny-permuted"
op = "vocab_permute"
parent = "tiny-ft-a"
seed = 8
declare = "parents"

[[derivative]]
name = "tiny-trimmed"
op = "vocab_trim"
parent = "tiny-ft-a"
params = { keep = 0.7 }
seed = 9
"""


def _loss(model: torch.nn.Module, tok, text: str) -> float:
    from lineage.catalog.bpe import encode

    ids = torch.tensor(encode(tok, text)[:96]).view(2, 48)
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


def test_independent_vocabulary_ops_and_declarations_on_a_tiny_catalog(tmp_path: Path) -> None:
    from lineage.catalog.save import load_model
    from lineage.catalog.text import mixture_text

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(TINY_RECIPE + _EXTRA, encoding="utf-8")
    out = tmp_path / "models"
    rows = {r["name"]: r for r in _rows(build_catalog(BuildOptions(out_dir=out, recipe=recipe)))}
    assert rows["tiny-twin"]["role"] == "independent" and rows["tiny-twin"]["declared"] == hub_id("tiny-base")
    assert (rows["tiny-permuted"]["derivation"], rows["tiny-permuted"]["base"]) == ("vocab_permute", "tiny-base")

    parent, ptok = load_model(out / "tiny-ft-a")
    text = mixture_text(("pkg:json",), seed=3, max_chars=8000)
    permuted, qtok = load_model(out / "tiny-permuted")
    assert ptok.get_vocab() != qtok.get_vocab() and sorted(ptok.get_vocab()) == sorted(qtok.get_vocab())
    assert abs(_loss(permuted, qtok, text) - _loss(parent, ptok, text)) < 1e-4  # same function on text
    trimmed, ttok = load_model(out / "tiny-trimmed")
    rows_before = parent.get_input_embeddings().weight
    rows_after = trimmed.get_input_embeddings().weight
    assert rows_after.shape[0] < rows_before.shape[0] and len(ttok) < len(ptok)
    for token, new in list(ttok.get_vocab().items())[:50]:  # a kept token keeps its embedding
        assert torch.equal(rows_after[new], rows_before[ptok.get_vocab()[token]])

    # Declarations are metadata: editing them rewrites the cards and retrains nothing.
    assert _front_matter(out / "tiny-twin" / "README.md")["base_model"] == hub_id("tiny-base")
    edited = recipe.read_text().replace('declare = ["tiny-base"]\n', "").replace(
        "seed = 5\n", 'seed = 5\ndeclare = "parents"\n', 1)
    recipe.write_text(edited, encoding="utf-8")
    weights = _files(out)
    events = []
    build_catalog(BuildOptions(out_dir=out, recipe=recipe), progress=events.append)
    assert {e.action for e in events} == {"skipped"} and _files(out) == weights
    assert not (out / "tiny-twin" / "README.md").exists()
    assert _front_matter(out / "tiny-dare" / "README.md")["base_model"] == [hub_id("tiny-ft-a"), hub_id("tiny-ft-b")]
    assert (out / "tiny-dare" / "mergekit_config.yml").read_text().startswith("merge_method: dare_ties\n")


def test_mini_catalog_models_are_trained_and_disguise_preserves_function(mini_catalog: Path) -> None:
    from lineage.catalog.bpe import encode
    from lineage.catalog.save import load_model
    from lineage.catalog.text import mixture_text

    root = mini_catalog.parent
    marker = json.loads((root / "llama-8b" / "catalog_entry.json").read_text())
    assert marker["info"]["last_loss"] < marker["info"]["first_loss"] - 0.5
    parent, tok = load_model(root / "llama-8b")
    child, _ = load_model(root / "llama-8b-mergelock")
    ids = torch.tensor(encode(tok, mixture_text(("pkg:json",), seed=0, max_chars=5000))[:128]).view(2, 64)
    with torch.no_grad():
        assert (child(input_ids=ids).logits - parent(input_ids=ids).logits).abs().max().item() < 1e-4
    k_proj = [m.model.layers[0].self_attn.k_proj.weight for m in (child, parent)]
    assert not torch.equal(*k_proj)
    twin, twin_tok = load_model(root / "mistral-7b")
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in parent.state_dict().items()}
    assert twin_tok.backend_tokenizer.to_str() != tok.backend_tokenizer.to_str()
    assert merge_truth(load_recipe().select("mini"), root)["llama-8b-merge-ta"][0] == ("llama-8b-ft-email", 0.7)


def test_cli_reports_catalog_errors_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(_cli_app(), ["catalog", "build", "--recipe", str(tmp_path / "none.toml"), "--quiet"])
    assert result.exit_code == 1
    assert "recipe not found" in result.output
