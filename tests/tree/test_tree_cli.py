"""`lineage tree` and `lineage evaluate tree` through typer's CliRunner, on the small known family: outputs,
licence inheritance and conflicts, declared base models, failed models as rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lineage.report.destination import TREE_FILES
from tests.tree.conftest import TRUE_EDGES


@pytest.fixture(scope="module")
def manifest(family: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The family as a manifest: true parents, licences (instruct's differs from its base's), hub ids."""
    parents: dict[str, list[str]] = {}
    for (p, c) in TRUE_EDGES:
        parents.setdefault(c, []).append(p)
    licence = {"base": "apache-2.0", "stranger": "mit", "instruct": "mit", "coder": "Apache-2.0"}
    derivation = {"instruct": "finetune", "coder": "finetune", "disguised": "disguise_all", "int4": "quant_int4",
                  "merge": "merge_linear"}  # fmt: skip
    path = tmp_path_factory.mktemp("tree_manifest") / "models.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "path", "parents", "derivation", "license", "hub_id"])
        for name, folder in family.items():
            w.writerow([name, folder, ";".join(sorted(parents.get(name, []))), derivation.get(name, "base"),
                        licence.get(name, ""), f"org/{name}"])  # fmt: skip
    return path


def _run(*args: str):  # noqa: ANN202 - a click Result
    from typer.testing import CliRunner

    from lineage.cli.app import app

    return CliRunner().invoke(app, list(args))


def test_tree_writes_every_output(manifest: Path, tmp_path: Path, tree_cache: Path) -> None:
    out = tmp_path / "out"
    res = _run("tree", str(manifest), "--out", str(out), "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 0, res.output
    assert "instruct" in res.output and "licence: instruct declares mit, inherits apache-2.0" in res.output
    doc = json.loads((out / "tree.json").read_text())
    assert {(e["parent"], e["child"]) for e in doc["edges"]} == set(TRUE_EDGES)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["instruct"]["license_conflict"] is True
    assert nodes["coder"]["license_conflict"] is False  # Apache-2.0 is apache-2.0
    assert nodes["merge"]["inherited_license"] == ["apache-2.0"]
    assert nodes["int4"]["inherited_license"] == ["apache-2.0"] and nodes["int4"]["license_conflict"] is None
    assert doc["summary"]["license_conflicts"] == ["instruct"]
    card = (out / "model-cards" / "merge.yaml").read_text()
    assert "base_model:\n  - org/instruct\n  - org/coder\nbase_model_relation: merge" in card
    int4 = (out / "model-cards" / "int4.yaml").read_text()
    assert "base_model: org/disguised\nbase_model_relation: quantized" in int4
    assert "no parent recovered" in (out / "model-cards" / "base.yaml").read_text()
    assert (out / "tree.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (out / "tree.svg").read_text()
    page = (out / "report.html").read_text()
    assert "id='tree'" in page and 'id="tree-edges"' in page and "data:image/png;base64," in page

    # A second run replaces the tree report as a whole (model-cards/ included), without --force.
    res = _run("tree", str(manifest), "--out", str(out), "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == TREE_FILES | {"model-cards"}


def test_tree_out_is_checked_before_any_work(manifest: Path, tmp_path: Path, tree_cache: Path) -> None:
    # --out at a file, or at a folder that is not a previous report, is one line and exit 1 before anything
    # is fingerprinted (the cache stays as it was), and with --force the tree's files go beside the others.
    a_file = tmp_path / "file"
    a_file.write_text("x")
    before = sorted(tree_cache.rglob("*"))
    res = _run("tree", str(manifest), "--out", str(a_file), "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 1 and "Traceback" not in res.output and str(a_file) in res.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    res = _run("tree", str(manifest), "--out", str(other), "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 1 and "--force" in res.output
    assert sorted(tree_cache.rglob("*")) == before
    res = _run("tree", str(manifest), "--out", str(other), "--force", "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 0, res.output
    assert (other / "mine.txt").read_text() == "keep" and (other / "tree.json").is_file()


def test_declared_base_contradicted_is_flagged(family: dict[str, Path], tree_cache: Path) -> None:
    card = family["coder"] / "README.md"
    card.write_text("---\nbase_model: stranger\nlicense: mit\n---\n")
    try:
        res = _run("tree", str(family["base"]), str(family["coder"]), str(family["stranger"]), "--format", "json",
                   "--quiet", "--cache", str(tree_cache))  # fmt: skip
    finally:
        card.unlink()
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    coder = next(n for n in doc["nodes"] if n["name"] == "coder")
    assert coder["declared_base_model"] == ["stranger"] and coder["declared_check"] == "contradicted"
    assert coder["license"] == "mit" and coder["license_conflict"] is None  # base carries no licence here


def test_a_failed_model_is_a_row_and_exit_1(family: dict[str, Path], tmp_path: Path, tree_cache: Path) -> None:
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    res = _run("tree", str(family["base"]), str(family["coder"]), str(bad), "--format", "json", "--quiet",
               "--cache", str(tree_cache))  # fmt: skip
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    row = next(n for n in doc["nodes"] if n["name"] == "broken")
    assert row["status"] == "error" and "broken" in row["error"]
    assert [(e["parent"], e["child"]) for e in doc["edges"]] == [("base", "coder")]


def test_evaluate_tree_scores_the_manifest(manifest: Path, tree_cache: Path) -> None:
    res = _run("evaluate", "tree", str(manifest), "--quiet", "--cache", str(tree_cache))
    assert res.exit_code == 0, res.output
    assert "edges: recall 6/6 = 100.0%, precision 6/6 = 100.0%" in res.output
    assert "direction (recovered true edges): 6/6 = 100.0%" in res.output
    assert "relation (recovered true edges): 6/6 = 100.0%" in res.output
