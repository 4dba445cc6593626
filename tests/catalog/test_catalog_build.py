"""Building catalogs: determinism, resuming, layouts, the manifest, the CLI, and the repository's mini build."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from lineage.catalog import COLUMNS, BuildOptions, build_catalog, load_recipe, merge_truth

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


def test_mini_catalog_manifest(mini_catalog: Path) -> None:
    rows = _rows(mini_catalog)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == set(load_recipe().select("mini").names())
    for r in rows:
        folder = mini_catalog.parent / r["path"]
        assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
        assert r["role"] in ("base", "derivative", "outsider")
        if r["role"] == "base":
            assert r["base"] == r["name"] and r["parents"] == "" and r["derivation"] == "base"
        elif r["role"] == "outsider":
            assert r["family"] == "unknown" and r["base"] == "" and r["derivation"] == "outsider"
        else:
            assert r["base"] and r["parents"]
    assert by_name["llama-8b-merge-ta"]["parents"] == "llama-8b-ft-email;llama-8b-ft-asyncio"
    assert by_name["llama-8b-merge-ta"]["derivation"] == "merge_task_arithmetic"
    assert by_name["mistral-7b"]["family"] == "mistral"


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
