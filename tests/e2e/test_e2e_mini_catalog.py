"""`lineage scan`, `classify`, `distance` and `attribute` end to end on the mini catalog (built once per session).

The mini catalog: bases llama-8b and mistral-7b (shape twins), outsider neox-s, two fine-tunes of llama-8b,
their task-arithmetic merge (weights 0.7 and 0.4 in the recipe) and a MergeLock disguise of llama-8b.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.cli.app import app
from lineage.jobs.manifest import read_manifest
from tests.e2e.conftest import cli_runner

pytestmark = pytest.mark.slow

VERDICT_KEYS = {"model", "family", "base", "distance", "confidence", "distances"}
MERGE = "llama-8b-merge-ta"


@pytest.fixture(scope="module")
def manifest(e2e_mini_manifest: Path):
    return read_manifest(e2e_mini_manifest)


@pytest.fixture(scope="module")
def scans(e2e_mini_scans):
    first, second = e2e_mini_scans
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    return json.loads(first.stdout), json.loads(second.stdout)


@pytest.fixture()
def warm(e2e_mini_scans, e2e_mini_cache: Path):
    """A runner on the cache the scans filled, and the `--cache` arguments pointing at it."""
    return cli_runner(e2e_mini_cache), ["--cache", str(e2e_mini_cache)]


def test_mini_catalog_manifest_is_what_the_tests_expect(manifest):
    # Guards every test below: if the recipe's mini subset changes, these tests must be revisited.
    roles = {r.name: r.role for r in manifest.rows}
    assert roles == {
        "llama-8b": "base", "mistral-7b": "base", "neox-s": "outsider", "llama-8b-ft-email": "derivative",
        "llama-8b-ft-asyncio": "derivative", MERGE: "derivative", "llama-8b-mergelock": "derivative",
        "llama-8b-twin": "independent",
    }  # fmt: skip
    assert all(r.path.is_dir() for r in manifest.rows)


def test_scan_json_scores_the_mini_catalog_perfectly(scans, manifest):
    doc, _ = scans
    assert set(doc) == {"summary", "results"}
    summary, results = doc["summary"], doc["results"]
    assert [r["model"] for r in results] == [r.name for r in manifest.rows]
    suspects = [r for r in manifest.rows if r.role != "base"]
    assert summary["family_accuracy"] == {"correct": len(suspects), "total": len(suspects), "rate": 1.0}
    assert summary["failed"] == 0 and summary["errors"] == {}
    assert summary["outsiders"] == {"total": 1, "flagged": 1, "missed": []}
    by_name = {r["model"]: r for r in results}
    assert by_name["neox-s"]["family"] == "unknown" and by_name["neox-s"]["base"] is None
    for row in manifest.rows:
        got = by_name[row.name]
        assert got["error"] is None and got["true_family"] == row.family
        if row.role != "outsider":
            assert (got["family"], got["base"]) == (row.family, row.base), got
    assert summary["fingerprinted"] == len(manifest.rows) and summary["cached"] == 0


def test_second_scan_fingerprints_nothing_and_agrees(scans, manifest):
    first, second = scans
    folders = [r for r in manifest.rows if r.path.is_dir()]
    assert second["summary"]["cached"] == len(folders) == 8
    assert second["summary"]["fingerprinted"] == 0 and second["summary"]["loaded"] == 0
    assert [(r["model"], r["family"], r["base"]) for r in second["results"]] == [
        (r["model"], r["family"], r["base"]) for r in first["results"]
    ]
    for a, b in zip(first["results"], second["results"]):
        assert a["distances"] == pytest.approx(b["distances"], abs=1e-12)


def test_classify_json_on_the_catalog_folder(warm, manifest, e2e_mini_manifest):
    runner, cache = warm
    folder = e2e_mini_manifest.parent  # a folder of model folders: every model of the catalog
    args = ["classify", str(folder), "--reference", str(e2e_mini_manifest), *cache, "--format", "json", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    verdicts = {v["model"]: v for v in json.loads(result.stdout)}
    assert sorted(verdicts) == sorted(r.name for r in manifest.rows)
    references = sorted(r.name for r in manifest.references)
    for row in manifest.rows:
        v = verdicts[row.name]
        assert set(v) == VERDICT_KEYS, v
        assert sorted(v["distances"]) == references
        assert 0.0 <= v["confidence"] <= 1.0 and v["distance"] >= 0.0
        assert v["family"] == row.family, v
        assert v["base"] == (None if row.role == "outsider" else row.base), v
        if row.role != "outsider":
            assert v["distance"] == pytest.approx(v["distances"][row.base], abs=1e-9)
            assert v["distance"] < min(d for name, d in v["distances"].items() if name != row.base)


def test_classify_table_names_every_suspect(warm, manifest, e2e_mini_manifest):
    runner, cache = warm
    suspects = [str(r.path) for r in manifest.rows if r.role != "base"]
    result = runner.invoke(app, ["classify", *suspects, "-r", str(e2e_mini_manifest), *cache, "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:5] == ["model", "family", "base", "distance", "confidence"]
    body = {line.split()[0]: line.split()[1] for line in lines[2:]}
    assert body == {r.name: r.family for r in manifest.rows if r.role != "base"}


def test_distance_matrix_of_catalog_models(warm, manifest):
    runner, cache = warm
    names = ["llama-8b", "llama-8b-mergelock", "llama-8b-ft-email", "mistral-7b", "neox-s"]
    paths = {r.name: str(r.path) for r in manifest.rows}
    result = runner.invoke(app, ["distance", *(paths[n] for n in names), *cache, "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["models"] == names and doc["method"] == "lineage"
    d = {(a, b): doc["matrix"][i][j] for i, a in enumerate(names) for j, b in enumerate(names)}
    for a in names:
        assert d[a, a] == pytest.approx(0.0, abs=1e-4)  # float32 correlations: ~1e-6, not 0
        for b in names:
            assert d[a, b] == pytest.approx(d[b, a], abs=1e-9) and 0.0 <= d[a, b] <= 2.0
    assert d["llama-8b", "llama-8b-mergelock"] < 1e-3  # a function-preserving disguise is the same model
    assert d["llama-8b", "llama-8b-ft-email"] < 0.5 * d["llama-8b", "mistral-7b"]
    assert d["llama-8b", "neox-s"] > 0.5 and d["mistral-7b", "neox-s"] > 0.5


def test_attribute_json_finds_the_task_arithmetic_parents_and_weights(warm, manifest, e2e_mini_manifest):
    from lineage.catalog.recipe import load_recipe, merge_truth

    runner, cache = warm
    merge = next(r for r in manifest.rows if r.name == MERGE)
    assert merge.derivation == "merge_task_arithmetic" and len(merge.parents) == 2
    truth = dict(merge_truth(load_recipe().select("mini"), e2e_mini_manifest.parent)[MERGE])
    assert set(truth) == set(merge.parents)

    args = ["attribute", str(merge.path), "--candidates", str(e2e_mini_manifest), *cache, "--format", "json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)
    assert {"model", "base", "parents", "residual"} <= set(doc) <= {"model", "base", "parents", "residual", "layers"}
    assert doc["model"] == MERGE and doc["base"] == merge.base == "llama-8b"
    assert all(set(p) == {"name", "weight"} for p in doc["parents"])
    weights = [p["weight"] for p in doc["parents"]]
    assert weights == sorted(weights, reverse=True)
    top = {p["name"]: p["weight"] for p in doc["parents"][:2]}
    assert set(top) == set(merge.parents), doc["parents"]
    for name, weight in truth.items():
        assert top[name] == pytest.approx(weight, abs=0.02), (name, doc["parents"])
    assert 0.0 <= doc["residual"] < 0.1


def test_attribute_of_a_fine_tune_is_not_explained_like_a_merge(warm, manifest, e2e_mini_manifest):
    # The control of the test above: a plain fine-tune is no combination of the other candidates, and the
    # residual says so (the merge's residual is near 0).
    runner, cache = warm
    ft = next(r for r in manifest.rows if r.name == "llama-8b-ft-asyncio")
    args = ["attribute", str(ft.path), "--candidates", str(e2e_mini_manifest), *cache, "--format", "json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)
    assert doc["model"] == ft.name and doc["base"] == "llama-8b"
    assert ft.name not in {p["name"] for p in doc["parents"]}
    assert doc["residual"] > 0.3, doc
