"""`lineage evaluate loo` end to end on the mini catalog.

The mini catalog holds one base per family (llama-8b, mistral-7b), so every fold leaves its family with no
base among the references: "unknown" is the only acceptable answer, a family is always a wrong one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.cli.app import app
from tests.e2e.conftest import cli_runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loo(e2e_mini_scans, e2e_mini_manifest: Path, e2e_mini_cache: Path) -> dict:
    runner = cli_runner(e2e_mini_cache)
    args = ["evaluate", "loo", str(e2e_mini_manifest), "--cache", str(e2e_mini_cache), "--json", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_loo_has_one_fold_per_base_with_its_whole_lineage(loo):
    assert loo["method"] == "lineage"
    folds = {f["left_out"]: f for f in loo["folds"]}
    assert sorted(folds) == ["llama-8b", "mistral-7b"]
    llama = {row["model"] for row in folds["llama-8b"]["rows"]}
    assert llama == {"llama-8b", "llama-8b-ft-email", "llama-8b-ft-asyncio", "llama-8b-merge-ta", "llama-8b-mergelock"}
    assert [row["model"] for row in folds["mistral-7b"]["rows"]] == ["mistral-7b"]
    for fold in folds.values():
        assert fold["family_in_references"] is False
        assert fold["models"] == len(fold["rows"]) == fold["right"] + fold["wrong"] + fold["unknown"] + fold["derived"]
    s = loo["summary"]
    assert s["models"] == s["without_family_in_references"] == 6 and s["with_family_in_references"] == 0
    assert s["right_rate"] is None


def test_loo_table_output_runs(e2e_mini_scans, e2e_mini_manifest, e2e_mini_cache):
    runner = cli_runner(e2e_mini_cache)
    result = runner.invoke(app, ["evaluate", "loo", str(e2e_mini_manifest), "--cache", str(e2e_mini_cache), "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[:2] == ["left", "out"]
    assert "leave-one-base-out (lineage)" in result.stdout and "of 6 models" in result.stdout


def test_loo_calls_a_family_with_no_reference_left_unknown(loo):
    # One base per family: every fold keeps references of a single family, so there is no cross-family pair
    # to calibrate a distance threshold on. What still tells the families apart is the tokenizer: a model is
    # related to a family only if it shares most of the family's vocabulary, and llama and mistral do not.
    s = loo["summary"]
    assert s["unknown_when_family_missing"] == s["without_family_in_references"] == 6
    assert s["wrong_family"] == 0 and s["as_expected"] == 6
    for fold in loo["folds"]:
        assert fold["unknown"] == fold["models"]
        assert all(row["outcome"] == "unknown" and row["family"] == "unknown" for row in fold["rows"])


def test_loo_derives_nothing_from_the_other_base(loo):
    # llama-8b and mistral-7b are shape twins: with llama-8b left out, its derivatives face a reference of
    # the very same shapes. Same shapes are not shared weights: none may be called derived from mistral-7b.
    assert loo["summary"]["derived_from_another_base"] == 0
    for fold in loo["folds"]:
        assert fold["derived"] == 0
        for row in fold["rows"]:
            assert row["verdict"] in ("related", "unknown") and row["derived_from"] is None, row
            assert row["p_value"] is None or row["p_value"] >= 0.01, row
