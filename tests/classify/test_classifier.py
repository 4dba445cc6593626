"""FamilyClassifier: scikit-learn conventions, K-Means seeded with the bases and fitted on the references,
verdict fields, the derivation test on synthetic weights."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from lineage.compare import get_method
from lineage.compare.lineage import LineageMethod, robust_scale
from lineage.compare.tensorguard import TensorGuardMethod
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.verdict import Verdict
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from tests.schema import VERDICT_KEYS


def test_init_only_stores_parameters():
    params = {
        "method": "tensorguard",
        "unknown": "off",
        "alpha": 0.1,
        "related_alpha": 0.02,
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
    assert clf.cluster_centers_.shape[0] == 3 and list(clf.cluster_families_) == families


def test_fit_takes_base_labels_for_references(make_family_sketches):
    bases, families, _, _ = make_family_sketches()
    clf = FamilyClassifier().fit(bases, families, ["B0", None, "B2"])
    assert clf.bases_ == ["B0", "base1", "B2"]  # a missing label falls back to the reference's name


def test_fit_rejects_bad_references(make_feature_fps):
    bases, families, _, _ = make_feature_fps()
    with pytest.raises(ClassificationError, match="no references"):
        FamilyClassifier().fit([], [])
    with pytest.raises(ClassificationError, match="one family"):
        FamilyClassifier().fit(bases, families[:1])
    with pytest.raises(ClassificationError, match="one family"):
        FamilyClassifier().fit(bases, families, ["base0"])
    with pytest.raises(ClassificationError, match="duplicate"):
        FamilyClassifier().fit([bases[0], bases[0]], ["a", "b"])
    with pytest.raises(ClassificationError, match="unknown"):
        FamilyClassifier().fit(bases, ["unknown", "a", "b"])
    with pytest.raises(ClassificationError, match="not fitted"):
        FamilyClassifier().classify(bases)
    with pytest.raises(ClassificationError, match="not fitted"):
        FamilyClassifier().predict(bases)
    with pytest.raises(ClassificationError, match="unknown method"):
        FamilyClassifier(method="nope").fit(bases, families)
    for alpha in (0.0, 0.5, -1.0):
        with pytest.raises(ValueError, match="alpha"):
            FamilyClassifier(alpha=alpha).fit(bases, families)


@pytest.mark.parametrize("method", ["tensorguard", "lineage"])
def test_separated_blobs_are_related_to_the_right_family(make_feature_fps, method):
    bases, families, suspects, truth = make_feature_fps()
    clf = FamilyClassifier(method=method, unknown="off").fit(bases, families)
    verdicts = clf.predict(suspects)
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert [v.family for v in verdicts] == truth
    run = clf.classify(suspects)
    assert [r.family for r in run.reference_results] == families  # bases stay in their own cluster
    for r, t in zip(run.results, truth):
        # Feature-only fingerprints carry no weights to test: never derived, and the verdict says so.
        assert (r.verdict, r.derived_from, r.base, r.p_value) == ("related", None, None, None)
        assert "no derivation test" in r.rule
        assert r.nearest[0]["reference"] == f"base{t[3:]}" and r.cluster == t
        assert r.distance == pytest.approx(r.distances[r.nearest[0]["reference"]])
        assert set(r.distances) == {"base0", "base1", "base2"}
        assert [n["distance"] for n in r.nearest] == sorted(r.distances.values())


def test_kmeans_is_seeded_with_the_bases_and_fitted_on_the_references(make_feature_fps):
    bases, families, suspects, _ = make_feature_fps()
    clf = FamilyClassifier(method="tensorguard", unknown="off", max_iter=1).fit(bases, families)
    # One reference per base: each centroid is its base's own vector, whatever the suspects.
    vectors, _ = clf.method_.embed(bases, bases)
    assert np.allclose(clf.cluster_centers_, vectors)
    assert list(clf.kmeans_.labels_) == [0, 1, 2]
    # A suspect identical to a base is in that base's cluster at distance 0.
    twin = Fingerprint(name="twin", tensorguard=dict(bases[1].tensorguard))
    verdict = clf.predict([twin])[0]
    assert (verdict.family, verdict.cluster, verdict.nearest[0]["reference"], verdict.distance) == (
        "fam1", "fam1", "base1", 0.0,
    )  # fmt: skip


def test_references_of_one_base_move_their_centroid_to_the_group_centre(make_family_sketches):
    # With a reference pack that holds known derivatives, the centroids become family centres.
    bases, families, suspects, truth = make_family_sketches(outsiders=0)
    refs = [*bases, *suspects]
    labels = [*families, *truth]
    base_labels = [fp.name for fp in bases] + [f"base{t[3:]}" for t in truth]
    clf = FamilyClassifier(unknown="off").fit(refs, labels, base_labels)
    vectors, _ = clf.method_.embed(refs, refs)
    for k, base in enumerate(bases):
        members = [i for i, b in enumerate(base_labels) if b == base.name]
        assert np.allclose(clf.cluster_centers_[k], vectors[members].mean(axis=0))
        assert not np.allclose(clf.cluster_centers_[k], vectors[k])


def test_derivatives_are_derived_with_small_p_values_outsiders_are_not(make_family_sketches):
    bases, families, suspects, truth = make_family_sketches(outsiders=20)
    run = FamilyClassifier().fit(bases, families).classify(suspects)
    for r, t in zip(run.results, truth):
        if t == "unknown":
            assert r.verdict != "derived" and r.derived_from is None and r.p_value > 0.01, r.rule
            continue
        assert (r.verdict, r.derived_from, r.family) == ("derived", f"base{t[3:]}", t), r.rule
        assert r.p_value < 1e-6
        weight = r.evidence["weight"]
        assert r.evidence["reference"] == r.derived_from and weight["agreement"] > 0.5
        assert [layer["layer"] for layer in weight["layers"]] == [0, 1]  # per-layer agreement with the base
        assert all(layer["agreement"] > 0.5 for layer in weight["layers"])
        assert r.nearest[0]["p_value"] <= r.p_value  # per pair uncorrected, the verdict's corrected


def test_unknown_verdict_has_no_base_and_reports_nearest_distance(make_feature_fps):
    bases, families, suspects, _ = make_feature_fps()
    run = FamilyClassifier(method="tensorguard", unknown=0.0).fit(bases, families).classify(suspects[:3])
    for r in run.results:
        assert (r.verdict, r.family, r.derived_from) == ("unknown", "unknown", None)
        assert r.distance == pytest.approx(min(r.distances.values()))
        assert r.cluster == "fam0"  # the K-Means cluster is still reported
        assert r.to_dict().keys() == VERDICT_KEYS
        assert r.words() == "unknown family"


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
    assert "sketch" in run.description
    assert [r.family for r in run.results] == truth
    assert {r.verdict for r in run.results} == {"derived"}
    assert [r.derived_from for r in run.reference_results] == [b.name for b in bases]  # each base is its own
    profile = method.vectors([*bases, *suspects], bases)
    assert profile.shape == (len(bases) + len(suspects), len(bases))
    assert np.allclose(np.diag(profile[: len(bases)]), 0.0, atol=1e-6)
    # One model without sketches: the whole comparison falls back to the 15 features.
    plain = Fingerprint(name="plain", tensorguard=dict(suspects[0].tensorguard))
    assert method.assignment([*bases, plain]) == "nearest"
    assert method.distances([plain], bases).shape == (1, len(bases))


def test_a_suspect_without_sketches_gets_no_derivation_test(make_family_sketches):
    bases, families, suspects, _ = make_family_sketches(outsiders=0)
    plain = Fingerprint(name="plain", tensorguard=dict(suspects[0].tensorguard))
    [verdict] = FamilyClassifier(unknown="off").fit(bases, families).predict([plain])
    assert verdict.verdict == "related" and verdict.p_value is None and verdict.derived_from is None


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


def test_hundreds_of_noisy_suspects_find_their_base(make_feature_fps):
    bases, families, _, _ = make_feature_fps(n_families=8, per_family=0)
    rng = np.random.default_rng(0)
    names = [f.name for f in bases]
    suspects = [
        Fingerprint(name=f"s{i}", tensorguard={k: v + rng.normal(0, 0.3) for k, v in bases[i % 8].tensorguard.items()})
        for i in range(400)
    ]
    run = FamilyClassifier(method="tensorguard").fit(bases, families).classify(suspects)
    assert len(run.results) == 400 and all(isinstance(r, Verdict) for r in run.results)
    assert sum(r.nearest[0]["reference"] == names[i % 8] for i, r in enumerate(run.results)) >= 390
    assert sum(r.family == families[i % 8] for i, r in enumerate(run.results)) >= 390


def test_get_method_registry():
    assert get_method("lineage").name == "lineage"
    method = TensorGuardMethod()
    assert get_method(method) is method
