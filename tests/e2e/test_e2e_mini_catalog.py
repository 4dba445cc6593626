"""`lineage scan`, `classify`, `distance` and `attribute` end to end on the mini catalog (built once per session).

The mini catalog: bases llama-8b and mistral-7b (shape twins), outsider neox-s, two fine-tunes of llama-8b,
their task-arithmetic merge (weights 0.7 and 0.4 in the recipe), a MergeLock disguise of llama-8b, and
llama-8b-twin, trained from scratch with llama-8b's tokenizer and data but another seed (related to the
llama family, derived from nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.cli.app import app
from lineage.refs.manifest import read_manifest
from lineage.report.rows import ROW_KEYS
from tests.e2e.conftest import cli_runner
from tests.schema import VERDICT_KEYS

pytestmark = pytest.mark.slow

MERGE = "llama-8b-merge-ta"
ALPHA = 0.01  # the derivation test's default level


def expected(row) -> tuple[str, str | None, str]:  # noqa: ANN001 - a ManifestRow
    """The verdict, derived_from and family a manifest row should get against the catalog's bases."""
    if row.role == "outsider":
        return "unknown", None, "unknown"
    if row.role == "independent":
        return "related", None, row.family
    return "derived", row.base or row.name, row.family  # a base is derived from itself


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


def test_scan_json_gives_every_derivative_and_the_independent_twin_its_verdict(scans, manifest):
    doc, _ = scans
    assert set(doc) == {"summary", "results"}
    summary, results = doc["summary"], doc["results"]
    assert [r["model"] for r in results] == [r.name for r in manifest.rows]
    by_name = {r["model"]: r for r in results}
    for row in manifest.rows:
        got = by_name[row.name]
        assert got["error"] is None and got["true_family"] == row.family
        assert (got["verdict"], got["derived_from"], got["family"]) == expected(row), got["rule"]
        assert got["base"] == got["derived_from"]
        if got["verdict"] == "derived":
            assert got["p_value"] < ALPHA
        else:  # the outsider, and the same-tokenizer independent model: not accused of descent
            assert got["p_value"] >= ALPHA and got["evidence"]["weight"]["p_value"] >= ALPHA
    verdicts = summary["verdicts"]
    derivatives = [r for r in manifest.rows if r.role == "derivative"]
    assert verdicts["derived_from_accuracy"] == {"correct": len(derivatives), "total": len(derivatives), "rate": 1.0}
    assert verdicts["false_derived"] == {"count": 0, "models": []}
    assert verdicts["missed_derived"] == {"count": 0, "models": []}
    assert verdicts["by_expected_verdict"]["related"] == {"correct": 1, "total": 1, "rate": 1.0}
    assert summary["failed"] == 0 and summary["errors"] == {}
    assert summary["fingerprinted"] == len(manifest.rows) and summary["cached"] == 0


def test_scan_flags_the_outsider_unknown(scans):
    doc, _ = scans
    outsider = next(r for r in doc["results"] if r["model"] == "neox-s")
    assert (outsider["verdict"], outsider["family"], outsider["derived_from"]) == ("unknown", "unknown", None)
    assert doc["summary"]["outsiders"] == {"total": 1, "flagged": 1, "missed": []}
    suspects = [r for r in doc["results"] if r["role"] != "base"]
    assert doc["summary"]["family_accuracy"] == {"correct": len(suspects), "total": len(suspects), "rate": 1.0}


def test_second_scan_fingerprints_nothing_and_agrees(scans, manifest):
    first, second = scans
    folders = [r for r in manifest.rows if r.path.is_dir()]
    assert second["summary"]["cached"] == len(folders) == 8
    assert second["summary"]["fingerprinted"] == 0 and second["summary"]["loaded"] == 0
    keys = ("model", "verdict", "derived_from", "family", "cluster")
    assert [tuple(r[k] for k in keys) for r in second["results"]] == [
        tuple(r[k] for k in keys) for r in first["results"]
    ]
    for a, b in zip(first["results"], second["results"]):
        assert a["distances"] == pytest.approx(b["distances"], abs=1e-12)
        assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-9, abs=1e-300)


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
        assert set(v) == VERDICT_KEYS | ROW_KEYS, v
        assert v["status"] == "ok" and v["path"] == str(row.path)
        assert sorted(v["distances"]) == references and v["method"] == "lineage"
        assert 0.0 <= v["p_value"] <= 1.0 and v["distance"] >= 0.0
        assert v["distance"] == pytest.approx(min(v["distances"].values()), abs=1e-12)
        assert (v["verdict"], v["derived_from"], v["family"]) == expected(row), v["rule"]
        if v["verdict"] == "derived":
            assert v["p_value"] < ALPHA and v["evidence"]["reference"] == v["derived_from"]
            assert v["evidence"]["weight"]["layers"], v["evidence"]  # the per-layer agreement
            # Derived and nearest agree here: the base is also the closest reference.
            assert v["nearest"][0]["reference"] == v["derived_from"]


def test_a_suspect_gets_the_same_verdict_alone_and_in_the_batch(warm, manifest, e2e_mini_manifest):
    runner, cache = warm
    suspects = [r for r in manifest.rows if r.role != "base"]
    base = ["-r", str(e2e_mini_manifest), *cache, "--format", "json", "--quiet"]
    batch = runner.invoke(app, ["classify", *(str(r.path) for r in suspects), *base])
    assert batch.exit_code == 0, batch.output
    together = {v["model"]: v for v in json.loads(batch.stdout)}
    for row in (suspects[0], suspects[-1], next(r for r in suspects if r.role == "independent")):
        alone = runner.invoke(app, ["classify", str(row.path), *base])
        assert alone.exit_code == 0, alone.output
        assert json.loads(alone.stdout) == [together[row.name]]


def test_classify_table_names_every_suspect_with_its_verdict_in_words(warm, manifest, e2e_mini_manifest):
    runner, cache = warm
    suspects = [r for r in manifest.rows if r.role != "base"]
    result = runner.invoke(app, ["classify", *(str(r.path) for r in suspects), "-r", str(e2e_mini_manifest), *cache,
                                 "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "verdict", "family", "p_value", "distance", "nearest", "path"]
    body = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert sorted(body) == sorted(r.name for r in suspects)
    words = {"derived": "derived from {base}", "related": "related to {family}", "unknown": "unknown unknown"}
    for r in suspects:
        phrase = words[expected(r)[0]].format(base=r.base, family=r.family).split()
        assert body[r.name][: len(phrase)] == phrase, (r.name, body[r.name])


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
            # Symmetric to float32 precision (the sketches are float32; the two directions sum in other orders).
            assert d[a, b] == pytest.approx(d[b, a], abs=1e-6) and 0.0 <= d[a, b] <= 2.0
    assert d["llama-8b", "llama-8b-mergelock"] < 1e-3  # a function-preserving disguise is the same model
    assert d["llama-8b", "llama-8b-ft-email"] < 0.5 * d["llama-8b", "mistral-7b"]
    assert d["llama-8b", "neox-s"] > 0.5 and d["mistral-7b", "neox-s"] > 0.5


def test_attribute_json_finds_the_task_arithmetic_parents_and_weights(warm, manifest, e2e_mini_manifest):
    from lineage.catalog import load_recipe, merge_truth

    runner, cache = warm
    merge = next(r for r in manifest.rows if r.name == MERGE)
    assert merge.derivation == "merge_task_arithmetic" and len(merge.parents) == 2
    truth = dict(merge_truth(load_recipe().select("mini"), e2e_mini_manifest.parent)[MERGE])
    assert set(truth) == set(merge.parents)

    args = ["attribute", str(merge.path), "--candidates", str(e2e_mini_manifest), *cache, "--format", "json", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [doc] = json.loads(result.stdout)
    keys = {"model", "base", "parents", "residual", "layers", "path", "status", "error"}
    assert {"model", "base", "parents", "residual", "path", "status"} <= set(doc) <= keys
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
