"""The published recipe (15 features, StandardScaler, Euclidean, K-Means seeded with the bases) on the
published fingerprints, with K-Means fitted on the references and each suspect judged on its own.

The paper fits K-Means on every model it clusters at once; its table (47/50 derivatives, 54/58 models)
comes from that transductive fit, in which the crowd of suspects moves the centroids and one base
(Qwen2.5-3B) leaves its own family. lineage fits on the references only, so that one suspect's verdict
cannot depend on the others (issue 10): no base moves, and the numbers below are that recipe's.
"""

from __future__ import annotations

import pytest

from lineage.decide.kmeans import FamilyClassifier
from lineage.fingerprint import Fingerprint, load_fingerprint
from lineage.jobs.manifest import DEMO_MANIFEST, read_manifest
from lineage.jobs.scan import ScanOptions, scan

# Measured with `lineage scan --method tensorguard --unknown off` (regression guard for the README's numbers).
INDUCTIVE_RIGHT, INDUCTIVE_RIGHT_WITH_BASES = 43, 51


@pytest.fixture(scope="module")
def paper_scan():
    return scan(options=ScanOptions(method="tensorguard", unknown="off", use_cache=False))


def test_demo_catalog_ships_58_models_and_8_bases():
    manifest = read_manifest(DEMO_MANIFEST)
    assert len(manifest.rows) == 58
    assert [r.name for r in manifest.references] == [
        "Llama-3.1-8B", "llama-3.2-1b", "Llama-3.2-3B", "Qwen2.5-3B",
        "Qwen2.5-7B-Instruct", "Mistral-7B-v0.1", "gemma-3-4b-it", "phi-4",
    ]  # fmt: skip
    assert all(r.path.is_file() for r in manifest.rows)
    assert "Apache" in (DEMO_MANIFEST.parent / "README.md").read_text()


def test_recipe_fitted_on_the_bases_moves_no_base(paper_scan):
    s = paper_scan.summary
    assert (s["family_accuracy"]["correct"], s["family_accuracy"]["total"]) == (INDUCTIVE_RIGHT, 50)
    assert s["family_accuracy_with_bases"]["correct"] == INDUCTIVE_RIGHT_WITH_BASES
    assert s["by_role"]["base"]["family"] == {"correct": 8, "total": 8, "rate": 1.0}  # the paper moves one
    assert s["failed"] == 0 and s["loaded"] == 58


def test_centroids_are_the_bases_so_each_suspect_takes_its_nearest_base(paper_scan):
    # One reference per base and K-Means fitted on the references alone: every centroid stays at its base.
    for row in paper_scan.rows:
        assert row["cluster_family"] == row["nearest"][0]["family"], row["model"]
        assert row["family"] == row["cluster_family"] and row["verdict"] == "related"  # unknown is off


def test_calibrated_default_keeps_the_closed_set_table(paper_scan):
    result = scan(options=ScanOptions(method="tensorguard", use_cache=False))
    s = result.summary
    assert s["closed_set"] == paper_scan.summary["closed_set"]
    assert s["threshold"]["rule"] == "calibrated" and s["threshold"]["threshold"] is not None
    # The unknown rule only ever turns a verdict into "unknown": no model changes family otherwise.
    assert all(r["family"] in ("unknown", r["cluster_family"]) for r in result.rows)
    assert all((r["verdict"] == "unknown") == (r["family"] == "unknown") for r in result.rows)
    assert s["family_accuracy"]["correct"] < INDUCTIVE_RIGHT


def test_paper_fixed_threshold_is_available():
    result = scan(options=ScanOptions(method="tensorguard", unknown="paper", use_cache=False))
    assert result.summary["threshold"]["threshold"] == 7.0
    assert all((r["verdict"] == "unknown") == (r["distance"] > 7.0) for r in result.rows)
    # A model far from every base in feature space is unknown under the paper's rule.
    manifest = read_manifest(DEMO_MANIFEST)
    refs = [load_fingerprint(r.path) for r in manifest.references]
    far = Fingerprint(name="far", tensorguard={k: 50.0 * v for k, v in refs[0].tensorguard.items()})
    clf = FamilyClassifier(method="tensorguard", unknown="paper").fit(refs, [r.family for r in manifest.references])
    [verdict] = clf.predict([far])
    assert verdict.verdict == "unknown" and verdict.distance > 7.0 and "7" in verdict.rule


def test_lineage_method_on_features_only_measured_not_tuned():
    """Regression guard for the numbers reported in the README (robust scaling + nearest base)."""
    result = scan(options=ScanOptions(method="lineage", unknown="off", use_cache=False))
    s = result.summary
    assert "nearest reference" in s["description"]
    assert s["family_accuracy"]["correct"] == 46
    assert s["family_accuracy_with_bases"]["correct"] == 54
    assert s["by_role"]["base"]["family"]["correct"] == 8  # nearest-base never moves a base
    assert all(r["family"] == r["nearest"][0]["family"] for r in result.rows)
