"""FamilyClassifier: scikit-learn conventions, K-Means seeded with the bases, verdict fields, vectorisation."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest

from lineage.compare import get_method
from lineage.compare.lineage import LineageMethod, robust_scale
from lineage.compare.tensorguard import TensorGuardMethod
from lineage.decide.kmeans import Classification, FamilyClassifier
from lineage.errors import ClassificationError
from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint


def test_init_only_stores_parameters():
    params = {
        "method": "tensorguard",
        "unknown": "off",
        "alpha": 0.1,
        "assign": "nearest",
        "max_iter": 5,
        "random_state": 3,
    }
    clf = FamilyClassifier(**params)
    assert {k: getattr(clf, k) for k in params} == params
    assert set(inspect.signature(FamilyClassifier).parameters) == set(params)
    assert not [k for k in vars(clf) if k.endswith("_")]


def test_fit_returns_self_and_learns_underscore_state(make_feature_fps):
    bases, families, _, _ = make_feature_fps()
    clf = FamilyClassifier(method="tensorguard")
    assert clf.fit(bases, families) is clf
    assert list(clf.classes_) == ["fam0", "fam1", "fam2"]
    assert clf.bases_ == ["base0", "base1", "base2"]
    assert clf.method_.name == "tensorguard"


def test_fit_rejects_bad_references(make_feature_fps):
    bases, families, _, _ = make_feature_fps()
    with pytest.raises(ClassificationError, match="no references"):
        FamilyClassifier().fit([], [])
    with pytest.raises(ClassificationError, match="one family"):
        FamilyClassifier().fit(bases, families[:1])
    with pytest.raises(ClassificationError, match="duplicate"):
        FamilyClassifier().fit([bases[0], bases[0]], ["a", "b"])
    with pytest.raises(ClassificationError, match="unknown"):
        FamilyClassifier().fit(bases, ["unknown", "a", "b"])
    with pytest.raises(ClassificationError, match="not fitted"):
        FamilyClassifier().classify(bases)
    with pytest.raises(ClassificationError, match="unknown method"):
        FamilyClassifier(method="nope").fit(bases, families)


@pytest.mark.parametrize("method", ["tensorguard", "lineage"])
def test_separated_blobs_are_classified_right(make_feature_fps, method):
    bases, families, suspects, truth = make_feature_fps()
    clf = FamilyClassifier(method=method, unknown="off").fit(bases, families)
    assert list(clf.predict(suspects)) == truth
    run = clf.classify(suspects)
    assert [r.family for r in run.reference_results] == families  # bases stay in their own cluster
    for r, t in zip(run.results, truth):
        assert r.base == f"base{t[3:]}"
        assert r.distance == pytest.approx(r.distances[r.base])
        assert set(r.distances) == {"base0", "base1", "base2"}
        assert 0.0 <= r.confidence <= 1.0


def test_kmeans_is_seeded_with_the_references(make_feature_fps):
    bases, families, suspects, _ = make_feature_fps()
    run = FamilyClassifier(method="tensorguard", unknown="off", max_iter=1).fit(bases, families).classify(suspects)
    assert run.assignment == "kmeans"
    # A suspect identical to a base is in that base's cluster at distance 0, with full confidence.
    twin = Fingerprint(name="twin", tensorguard=dict(bases[1].tensorguard))
    verdict = FamilyClassifier(method="tensorguard", unknown="off").fit(bases, families).classify([twin]).results[0]
    assert (verdict.family, verdict.base, verdict.distance, verdict.confidence) == ("fam1", "base1", 0.0, 1.0)


def test_confidence_is_the_margin_to_the_next_family():
    a = Fingerprint(name="a", tensorguard={k: 0.0 for k in TENSORGUARD_FEATURES})
    b = Fingerprint(name="b", tensorguard={k: 0.0 for k in TENSORGUARD_FEATURES} | {"global_mean": 4.0})
    s = Fingerprint(name="s", tensorguard={k: 0.0 for k in TENSORGUARD_FEATURES} | {"global_mean": 1.0})
    clf = FamilyClassifier(method="lineage", unknown="off", assign="nearest").fit([a, b], ["A", "B"])
    verdict = clf.classify([s]).results[0]
    assert verdict.family == "A"
    assert verdict.confidence == pytest.approx(1 - verdict.distances["a"] / verdict.distances["b"])


def test_unknown_verdict_has_no_base_and_reports_nearest_distance(make_feature_fps):
    bases, families, suspects, _ = make_feature_fps()
    run = FamilyClassifier(method="tensorguard", unknown=0.0).fit(bases, families).classify(suspects[:3])
    for r in run.results:
        assert (r.family, r.base) == ("unknown", None)
        assert r.distance == pytest.approx(min(r.distances.values()))
        assert r.cluster_family == "fam0"
        assert r.to_dict().keys() == {"model", "family", "base", "distance", "confidence", "distances"}


def test_paper_threshold_needs_a_method_that_has_one(make_feature_fps):
    bases, families, suspects, _ = make_feature_fps()
    run = FamilyClassifier(method="tensorguard", unknown="paper").fit(bases, families).classify(suspects)
    assert run.calibration.threshold == 7.0
    with pytest.raises(ClassificationError, match="published threshold"):
        FamilyClassifier(method="lineage", unknown="paper").fit(bases, families).classify(suspects)
    with pytest.raises(ValueError):
        FamilyClassifier(unknown="sometimes").fit(bases, families)
    with pytest.raises(ValueError):
        FamilyClassifier(unknown=-1.0).fit(bases, families)


def test_lineage_method_uses_sketches_when_every_model_has_them(make_family_sketches):
    bases, families, suspects, truth = make_family_sketches(outsiders=0)
    method = LineageMethod()
    run = FamilyClassifier(method=method, unknown="off").fit(bases, families).classify(suspects)
    assert run.assignment == "kmeans" and "sketch" in run.description
    assert [r.family for r in run.results] == truth
    profile = method.vectors([*bases, *suspects], bases)
    assert profile.shape == (len(bases) + len(suspects), len(bases))
    assert np.allclose(np.diag(profile[: len(bases)]), 0.0, atol=1e-6)
    # One model without sketches: the whole comparison falls back to the 15 features.
    plain = Fingerprint(name="plain", tensorguard=dict(suspects[0].tensorguard))
    assert method.assignment([*bases, plain]) == "nearest"
    assert method.distances([plain], bases).shape == (1, len(bases))


def test_methods_agree_between_distances_and_embed(make_feature_fps):
    bases, _, suspects, _ = make_feature_fps()
    for method in (TensorGuardMethod(), LineageMethod()):
        everyone = [*bases, *suspects]
        _, dist = method.embed(everyone, bases)
        assert np.allclose(dist, method.distances(everyone, bases))
        assert np.allclose(np.diag(dist[: len(bases)]), 0.0)


def test_robust_scale_falls_back_to_std_and_drops_constants():
    x = np.array([[1.0, 5.0, 2.0], [1.0, 5.0, 4.0], [1.0, 5.0, 6.0], [1.0, 9.0, 8.0]])
    z = robust_scale(x)
    assert np.all(z[:, 0] == 0.0)  # constant: dropped
    assert z[3, 1] == pytest.approx(4.0 / x[:, 1].std())  # MAD 0: standard deviation
    assert np.median(z[:, 2]) == pytest.approx(0.0)


def test_classification_of_thousands_is_one_vectorised_pass(make_feature_fps):
    bases, families, _, _ = make_feature_fps(n_families=8, per_family=0)
    rng = np.random.default_rng(0)
    names = [f.name for f in bases]
    suspects = [
        Fingerprint(name=f"s{i}", tensorguard={k: v + rng.normal(0, 0.3) for k, v in bases[i % 8].tensorguard.items()})
        for i in range(3000)
    ]
    start = time.perf_counter()
    run = FamilyClassifier(method="tensorguard").fit(bases, families).classify(suspects)
    assert time.perf_counter() - start < 3.0
    assert all(isinstance(r, Classification) for r in run.results)
    assert sum(r.base == names[i % 8] for i, r in enumerate(run.results)) >= 2900


def test_get_method_registry():
    assert get_method("lineage").name == "lineage"
    method = TensorGuardMethod()
    assert get_method(method) is method
