"""`lineage verify` on the mini catalog, with model cards written here: true, false, missing and unverifiable
declarations, a mergekit config naming intermediate fine-tunes, and a LoRA adapter whose base is found by the
manifest's `hub_id`. Checks the outcome of each model, the exit codes, the JSON and the CycloneDX ML-BOM.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lineage.cli.app import app

pytestmark = pytest.mark.slow

# What each catalog model declares here, and what verify must answer (the weights' truth is the catalog's).
CARDS = {
    "llama-8b-ft-email": ("---\nbase_model: https://huggingface.co/CATALOG/llama-8b@main\n---\n", "consistent"),
    "llama-8b-ft-asyncio": (
        "---\nbase_model: catalog/mistral-7b\nbase_model_relation: finetune\n---\n",
        "contradicted",
    ),
    "llama-8b-mergelock": (None, "undeclared"),
    "neox-s": ("---\nbase_model:\n- someone/not-in-the-catalog\n---\n", "unverifiable"),
}
MERGEKIT = (
    "merge_method: task_arithmetic\nbase_model: catalog/llama-8b\nmodels:\n"
    "  - model: catalog/llama-8b-ft-email\n  - model: catalog/llama-8b-ft-asyncio\n"
)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The mini catalog with the cards above and a LoRA adapter of llama-8b; returns (folder, manifest with hub_id)."""
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from lineage.catalog.build import BuildOptions, build_catalog

    manifest = build_catalog(BuildOptions(size="mini", out_dir=tmp_path_factory.mktemp("verify_mini")))
    root = manifest.parent
    for folder in (p for p in root.iterdir() if p.is_dir()):
        for stale in ("README.md", "mergekit_config.yml"):  # whatever the catalog declares, ours is the test
            (folder / stale).unlink(missing_ok=True)
    for name, (card, _) in CARDS.items():
        if card:
            (root / name / "README.md").write_text(card + "# model card\n")
    (root / "llama-8b-merge-ta" / "mergekit_config.yml").write_text(MERGEKIT)
    _write_adapter(peft, root / "llama-8b", root / "llama-8b-lora")

    rows = list(csv.DictReader(manifest.read_text().splitlines()))
    with_hub = root / "with_hub.csv"
    with with_hub.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys([*rows[0], "hub_id"])))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "hub_id": f"Catalog/{row['name']}"})
    return root, with_hub


def _write_adapter(peft, base: Path, out: Path) -> None:  # noqa: ANN001
    from transformers import AutoModelForCausalLM

    model = peft.get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out)
    # peft writes a card declaring the local base path; without it the adapter config is the declaration.
    (out / "README.md").unlink()
    cfg = json.loads((out / "adapter_config.json").read_text())
    (out / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "catalog/LLAMA-8B"}))


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> CliRunner:
    cache = tmp_path_factory.mktemp("verify_cache")
    return CliRunner(env={"LINEAGE_CACHE": str(cache), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})


def _verify(runner: CliRunner, catalog: tuple[Path, Path], names: list[str], *extra: str):  # noqa: ANN202
    root, manifest = catalog
    args = ["verify", *(str(root / n) for n in names), "--reference", str(manifest), "--device", "cpu", "-q", *extra]
    return runner.invoke(app, args)


def test_each_declaration_is_judged(runner: CliRunner, catalog: tuple[Path, Path]) -> None:
    names = [*CARDS, "llama-8b-merge-ta", "llama-8b"]
    result = _verify(runner, catalog, names, "--format", "json")
    assert result.exit_code == 1, result.output  # findings, no error
    got = {row["model"]: row for row in json.loads(result.stdout)}
    expected = {name: status for name, (_, status) in CARDS.items()}
    # neox-s declares a model of no known lineage: unverifiable whatever its weights say.
    assert {n: got[n]["status"] for n in expected} == expected, {n: got[n]["reason"] for n in got}
    assert got["llama-8b-merge-ta"]["status"] == "consistent"  # declared fine-tunes resolve to their base
    assert got["llama-8b-merge-ta"]["declared_in"] == "mergekit_config.yml (mergekit_config.yml)"
    assert got["llama-8b"]["status"] == "consistent"  # the reference itself
    assert got["llama-8b-ft-asyncio"]["relation"] == "finetune"
    assert got["llama-8b-ft-asyncio"]["declared_lineage"] == ["mistral-7b"]
    assert got["llama-8b-ft-asyncio"]["derived_from"] == "llama-8b"


def test_all_consistent_exits_0_and_table(runner: CliRunner, catalog: tuple[Path, Path]) -> None:
    result = _verify(runner, catalog, ["llama-8b-ft-email", "llama-8b"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["model", "status"]
    assert all(line.split()[1] == "consistent" for line in lines[1:]) and len(lines) == 3


def test_adapter_base_found_by_hub_id(runner: CliRunner, catalog: tuple[Path, Path]) -> None:
    result = _verify(runner, catalog, ["llama-8b-lora"], "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["status"] == "consistent" and row["declared_in"].startswith("adapter_config.json")
    assert row["relation"] == "adapter" and row["derived_from"] == "llama-8b"


def test_errors_exit_2(runner: CliRunner, catalog: tuple[Path, Path], tmp_path: Path) -> None:
    root, manifest = catalog
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "notes.txt").write_text("no weights here")
    result = runner.invoke(
        app, ["verify", str(empty), str(root / "llama-8b-ft-email"), "-r", str(manifest), "--device", "cpu", "-q"]
    )
    assert result.exit_code == 2, result.output
    assert "no model found" in result.stderr
    assert "llama-8b-ft-email" in result.stdout  # the other model is still checked
    missing = runner.invoke(app, ["verify", str(root / "llama-8b"), "-r", str(tmp_path / "nope.csv"), "-q"])
    assert missing.exit_code == 2 and "no such manifest" in missing.stderr


def test_cyclonedx_bom(runner: CliRunner, catalog: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("cyclonedx")
    from lineage.verify.bom import validate_cyclonedx

    out = tmp_path / "bom.json"
    result = _verify(
        runner, catalog, ["llama-8b-ft-email", "llama-8b-ft-asyncio"], "--format", "cyclonedx", "--out", str(out)
    )
    assert result.exit_code == 1, result.output
    text = out.read_text()
    assert validate_cyclonedx(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == "1.6"
    comps = {c["name"]: c for c in doc["components"]}
    assert set(comps) == {"llama-8b-ft-email", "llama-8b-ft-asyncio"}
    for comp in comps.values():
        assert comp["type"] == "machine-learning-model"
        (ancestor,) = comp["pedigree"]["ancestors"]
        assert ancestor["name"] == "llama-8b" and ancestor["purl"] == "pkg:huggingface/catalog/llama-8b"
        evidence = {p["name"]: p["value"] for p in ancestor["properties"]}
        assert evidence["lineage:verdict"] == "derived"
    props = {p["name"]: p["value"] for p in comps["llama-8b-ft-asyncio"]["properties"]}
    assert props["lineage:outcome"] == "contradicted" and props["lineage:declared"] == "catalog/mistral-7b"
    bad = text.replace('"machine-learning-model"', '"banana"')
    assert validate_cyclonedx(bad) is not None  # the validator can fail
