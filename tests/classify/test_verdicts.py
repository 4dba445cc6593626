"""Verdicts (issue 10): one per suspect, the same alone and in any batch; the JSON schema; the tests
behind `derived` (the weight test, the function test, the Sidak correction) checked against their nulls.

Synthetic fingerprints (`synth.py`) carry sketches and raw responses, so every stage of a verdict runs:
distances, the K-Means cluster, the weight test, the calibrated family threshold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t
from typer.testing import CliRunner

from lineage import __version__
from lineage.compare.identity import NO_MATCH, weight_test
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.null import FunctionNull
from lineage.decide.verdict import DERIVED, RELATED, UNKNOWN, VERDICTS, Verdict, sidak
from lineage.fingerprint import Fingerprint, save_fingerprint
from lineage.report.tables import format_results, to_json

from .synth import features, perturbed, random_responses, random_sketches, sketch_fingerprint, write_manifest

#: Issue 10's keys of a verdict's JSON object, with their types (None allowed where listed).
SCHEMA: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "verdict": (str,),
    "derived_from": (str, type(None)),
    "family": (str,),
    "p_value": (float, type(None)),
    "nearest": (list,),
    "evidence": (dict,),
    "threshold": (dict,),
    "rule": (str,),
    "method": (str,),
    "lineage_version": (str,),
    "probe_settings": (dict,),
    "cluster": (str,),
}
FAMILIES = ("fa", "fb", "fc")


def _mix(a: dict[str, np.ndarray], b: dict[str, np.ndarray], share: float) -> dict[str, np.ndarray]:
    return {k: (share * a[k] + (1 - share) * b[k]).astype(np.float32) for k in a}


@pytest.fixture(scope="module")
def world() -> dict:
    """Three references, a derivative of each, an outsider, and 31 suspects mixed about 55/45 from two
    families (the issue's reproduction of verdicts that flipped with the batch)."""
    rng = np.random.default_rng(10)
    sketches = {f: random_sketches(rng) for f in FAMILIES}
    responses = {f: random_responses(rng) for f in FAMILIES}
    refs = [sketch_fingerprint(f"{f}-base", sketches[f], features(rng), responses[f]) for f in FAMILIES]
    derivatives = [
        sketch_fingerprint(
            f"{f}-ft", perturbed(sketches[f], rng, 0.2), features(rng), perturbed(responses[f], rng, 0.2)
        )
        for f in FAMILIES
    ]
    outsider = sketch_fingerprint("outsider", random_sketches(rng), features(rng), random_responses(rng))
    mixtures = []
    for i in range(31):
        a, b = rng.choice(len(FAMILIES), size=2, replace=False)
        share = float(rng.uniform(0.5, 0.6))
        fa, fb = FAMILIES[a], FAMILIES[b]
        mixtures.append(
            sketch_fingerprint(
                f"mix{i}",
                perturbed(_mix(sketches[fa], sketches[fb], share), rng, 0.3),
                features(rng),
                perturbed(_mix(responses[fa], responses[fb], share), rng, 0.3),
            )
        )
    clf = FamilyClassifier().fit(refs, list(FAMILIES), [r.name for r in refs])
    return {"refs": refs, "derivatives": derivatives, "outsider": outsider, "mixtures": mixtures, "clf": clf}


# --- batch independence ---------------------------------------------------------------------------------


def test_a_verdict_is_the_same_alone_and_in_any_batch(world):
    clf = world["clf"]
    suspects = [*world["derivatives"], world["outsider"], *world["mixtures"]]
    alone = {fp.name: to_json(clf.predict([fp])[0].to_dict()) for fp in suspects}
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = [suspects[i] for i in rng.permutation(len(suspects))]
        together = {v.model: to_json(v.to_dict()) for v in clf.predict(batch)}
        assert together == alone
    # classify() (suspects and references judged together) agrees as well.
    run = clf.classify(suspects[:5])
    assert [to_json(v.to_dict()) for v in run.results] == [alone[fp.name] for fp in suspects[:5]]
    # The mixtures are a real test: they are not all given one family.
    assert len({json.loads(alone[fp.name])["cluster"] for fp in world["mixtures"]}) > 1


def test_refitting_on_the_same_references_gives_the_same_verdicts(world):
    again = FamilyClassifier().fit(world["refs"], list(FAMILIES), [r.name for r in world["refs"]])
    for fp in world["mixtures"][:8]:
        assert to_json(again.predict([fp])[0].to_dict()) == to_json(world["clf"].predict([fp])[0].to_dict())


# --- the three verdicts ---------------------------------------------------------------------------------


def test_derivatives_are_derived_and_the_outsider_is_unknown(world):
    clf = world["clf"]
    for fp, family in zip(world["derivatives"], FAMILIES):
        [v] = clf.predict([fp])
        assert (v.verdict, v.derived_from, v.family) == (DERIVED, f"{family}-base", family), v.rule
        assert v.p_value < 1e-6 and v.words() == f"derived from {family}-base"
    [v] = clf.predict([world["outsider"]])
    assert (v.verdict, v.derived_from, v.family) == (UNKNOWN, None, UNKNOWN), v.rule
    assert v.p_value > 0.01 and v.distance > v.threshold["related_distance"]


def test_related_is_family_without_descent(world):
    # Same sketches as a reference (same family function) but independent weights: related, not derived.
    rng = np.random.default_rng(3)
    ref = world["refs"][1]
    lookalike = sketch_fingerprint("lookalike", perturbed(ref.sketches, rng, 0.2), features(rng), random_responses(rng))
    [v] = world["clf"].predict([lookalike])
    assert (v.verdict, v.derived_from, v.family) == (RELATED, None, FAMILIES[1]), v.rule
    assert v.p_value > 0.01 and v.words() == f"related to {FAMILIES[1]} (not derived)"
    assert v.evidence["family"]["reference"] == ref.name and v.evidence["family"]["shared_anchors"] > 0


# --- the JSON schema ------------------------------------------------------------------------------------


def _check_schema(doc: dict, references: list[str]) -> None:
    for key, types in SCHEMA.items():
        assert key in doc, key
        assert isinstance(doc[key], types), (key, doc[key])
    assert doc["verdict"] in VERDICTS
    assert (doc["derived_from"] is not None) == (doc["verdict"] == DERIVED)
    assert doc["family"] == UNKNOWN if doc["verdict"] == UNKNOWN else doc["family"] != UNKNOWN
    assert 0.0 <= doc["p_value"] <= 1.0
    assert doc["lineage_version"] == __version__ and doc["method"] == "lineage"
    assert 1 <= len(doc["nearest"]) <= len(references)
    for entry in doc["nearest"]:
        assert {"reference", "family", "distance", "p_value", "weight_p", "function_p"} <= set(entry)
        assert entry["reference"] in references and 0.0 <= entry["p_value"] <= 1.0
    distances = [n["distance"] for n in doc["nearest"]]
    assert distances == sorted(distances) and distances[0] == pytest.approx(min(doc["distances"].values()))
    assert sorted(doc["distances"]) == sorted(references)
    assert {"alpha", "related_distance", "function_null"} <= set(doc["threshold"])
    assert 0.0 < doc["threshold"]["alpha"] < 0.5
    evidence = doc["evidence"]
    assert {"weight", "function", "family", "basis"} <= set(evidence)
    layers = evidence["weight"]["layers"]  # the per-layer agreement with the best reference
    assert layers and all({"layer", "reference_layer", "cosine"} == set(layer) for layer in layers)
    assert all(isinstance(layer["cosine"], float) for layer in layers)
    assert evidence["basis"]["basis"] in ("tokens", "ids")
    json.dumps(doc, allow_nan=False)  # plain JSON, no NaN


def test_every_documented_key_with_its_type(world):
    refs = [r.name for r in world["refs"]]
    for fp in [*world["derivatives"], world["outsider"], *world["mixtures"][:3]]:
        _check_schema(json.loads(to_json(world["clf"].predict([fp])[0].to_dict())), refs)


@pytest.fixture(scope="module")
def on_disk(world, tmp_path_factory) -> tuple[Path, Path]:
    """The world as fingerprint files: a reference manifest and a folder of suspects."""
    root = tmp_path_factory.mktemp("verdicts")
    rows = []
    for ref, family in zip(world["refs"], FAMILIES):
        save_fingerprint(ref, root / "refs" / f"{ref.name}.fingerprint.safetensors")
        rows.append({"name": ref.name, "path": f"refs/{ref.name}.fingerprint.safetensors", "family": family,
                     "role": "base"})  # fmt: skip
    for fp in [*world["derivatives"], world["outsider"]]:
        save_fingerprint(fp, root / "suspects" / f"{fp.name}.fingerprint.safetensors")
    return write_manifest(root / "refs.csv", rows), root / "suspects"


def test_classify_cli_json_gives_the_schema(world, on_disk, tmp_path):
    from lineage.cli.app import app

    manifest, suspects = on_disk
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["classify", str(suspects), "-r", str(manifest), "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    docs = {d["model"]: d for d in json.loads(result.stdout)}
    assert sorted(docs) == sorted(["fa-ft", "fb-ft", "fc-ft", "outsider"])
    for doc in docs.values():
        _check_schema(doc, [r.name for r in world["refs"]])
    assert [docs[f"{f}-ft"]["derived_from"] for f in FAMILIES] == [f"{f}-base" for f in FAMILIES]
    assert docs["outsider"]["verdict"] == UNKNOWN
    # The same verdicts as the library's, through the file format and the CLI.
    for fp in [*world["derivatives"], world["outsider"]]:
        expected = world["clf"].predict([fp])[0]
        assert (docs[fp.name]["verdict"], docs[fp.name]["derived_from"]) == (expected.verdict, expected.derived_from)
        assert docs[fp.name]["p_value"] == pytest.approx(expected.p_value, rel=1e-9, abs=1e-300)


def test_classify_cli_table_shows_the_verdict_in_words(on_disk, tmp_path):
    from lineage.cli.app import app

    manifest, suspects = on_disk
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["classify", str(suspects), "-r", str(manifest), "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "verdict", "family", "p_value", "distance"]
    body = {line.split()[0]: line for line in lines[2:]}
    for family in FAMILIES:
        assert f"derived from {family}-base" in body[f"{family}-ft"]
    assert body["outsider"].split()[1:3] == ["unknown", "unknown"]


def test_table_words_for_each_verdict():
    rows = [
        {"model": "d", "verdict": DERIVED, "family": "f", "derived_from": "b", "p_value": 1e-9, "distance": 0.1},
        {"model": "r", "verdict": RELATED, "family": "f", "derived_from": None, "p_value": 0.5, "distance": 0.5},
        {"model": "u", "verdict": UNKNOWN, "family": UNKNOWN, "derived_from": None, "p_value": 0.9, "distance": 1.0},
    ]
    lines = format_results(rows, "table").splitlines()[2:]
    assert [" ".join(line.split()[1:4]) for line in lines] == ["derived from b", "related to f", "unknown unknown 0.9"]


# --- Verdict refuses inconsistent states ---------------------------------------------------------------


def _verdict(**changes) -> Verdict:
    fields = {
        "model": "m", "verdict": DERIVED, "derived_from": "b", "family": "f", "p_value": 1e-9,
        "nearest": [{"reference": "b", "family": "f", "distance": 0.1}], "evidence": {}, "threshold": {},
        "rule": "r", "method": "lineage", "lineage_version": __version__, "probe_settings": {}, "cluster": "f",
    }  # fmt: skip
    return Verdict(**{**fields, **changes})


def test_verdict_refuses_inconsistent_states():
    assert _verdict().base == "b" and _verdict().distance == 0.1
    with pytest.raises(ValueError, match="derived_from"):
        _verdict(derived_from=None)
    with pytest.raises(ValueError, match="derived_from"):
        _verdict(verdict=RELATED)
    with pytest.raises(ValueError, match="derived_from"):
        _verdict(verdict=UNKNOWN, family=UNKNOWN)
    with pytest.raises(ValueError, match="verdict"):
        _verdict(verdict="probably")
    related = _verdict(verdict=RELATED, derived_from=None)
    assert related.base is None and related.to_dict()["derived_from"] is None
    assert math.isnan(_verdict(nearest=[]).distance)


# --- sidak and the function null -----------------------------------------------------------------------


def test_sidak_is_a_monotone_probability_exact_for_tiny_p():
    ps = [0.0, 1e-300, 1e-12, 1e-6, 0.001, 0.01, 0.2, 0.5, 0.9, 1.0]
    for tries in (1, 2, 8, 61, 10_000):
        values = [sidak(p, tries) for p in ps]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert values == sorted(values)  # monotone in p
        assert all(v >= p for v, p in zip(values, ps))  # trying more references never helps a suspect
        assert sidak(0.0, tries) == 0.0 and sidak(1.0, tries) == 1.0
    for p in (1e-9, 0.01, 0.3):
        assert [sidak(p, r) for r in (1, 2, 5, 50)] == sorted(sidak(p, r) for r in (1, 2, 5, 50))
        assert sidak(p, 1) == pytest.approx(p, rel=1e-12)
        assert sidak(p, 3) == pytest.approx(1 - (1 - p) ** 3, rel=1e-9)
    # Where 1 - (1 - p)^R rounds to 0 in floating point, the correction is still R p.
    assert 1 - (1 - 1e-300) ** 10 == 0.0
    assert sidak(1e-300, 10) == pytest.approx(1e-299, rel=1e-9)
    assert sidak(1e-20, 61) == pytest.approx(61e-20, rel=1e-9)


def test_function_null_p_value_is_the_t_prediction_tail():
    rng = np.random.default_rng(1)
    sample = tuple(np.exp(rng.normal(np.log(0.3), 0.2, 12)).tolist())
    null = FunctionNull(sample, "test")
    logs = np.log(sample)
    n, mean, sd = len(logs), logs.mean(), logs.std(ddof=1)
    for d in (0.05, 0.2, 0.3, 0.6):
        expected = student_t.cdf((math.log(d) - mean) / (sd * math.sqrt(1 + 1 / n)), df=n - 1)
        assert null.p_value(d) == pytest.approx(expected, rel=1e-12)
    grid = np.linspace(0.0, 2.0, 201)
    values = [null.p_value(float(d)) for d in grid]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)  # monotone in the distance
    assert null.p_value(math.exp(mean)) == pytest.approx(0.5)
    assert 0.0 < null.p_value(0.0) < 1e-6  # an identical copy: tiny, and a number (the floor, not log 0)
    assert null.p_value(0.0) == null.p_value(-1e-7)  # float32 rounding below 0 is the same copy
    assert null.to_dict()["n"] == 12 and null.to_dict()["geometric_mean"] == pytest.approx(math.exp(mean))


def test_function_null_is_calibrated_on_its_own_distribution():
    # Under the null (one more log-normal draw), P(p <= a) = a for the t prediction distribution.
    rng = np.random.default_rng(2)
    ps = []
    for _ in range(2000):
        sample = np.exp(rng.normal(-1.0, 0.3, 9))
        ps.append(FunctionNull(tuple(sample.tolist())).p_value(float(np.exp(rng.normal(-1.0, 0.3)))))
    ps = np.array(ps)
    for a in (0.01, 0.05, 0.2):
        assert abs(np.mean(ps <= a) - a) < 3 * math.sqrt(a * (1 - a) / len(ps)) + 0.005


def test_function_null_unusable_or_bad_samples():
    assert FunctionNull(()).p_value(0.0) == 1.0 and not FunctionNull((0.1, 0.2)).usable
    assert FunctionNull((0.1, 0.2)).p_value(1e-9) == 1.0  # too few to estimate a spread: never derived
    flat = FunctionNull((0.3, 0.3, 0.3))
    assert flat.p_value(0.1) == 0.0 and flat.p_value(0.5) == 1.0
    for bad in ((0.1, 0.0, 0.2), (0.1, -0.2, 0.3), (0.1, math.nan, 0.2), (0.1, math.inf, 0.2)):
        with pytest.raises(ValueError, match="positive and finite"):
            FunctionNull(bad)


# --- the weight test -----------------------------------------------------------------------------------


def _weights_only(name: str, responses: dict[str, np.ndarray]) -> Fingerprint:
    rng = np.random.default_rng(0)
    return Fingerprint(name=name, tensorguard=features(rng), responses=responses)


def test_weight_test_of_a_fingerprint_against_itself_and_a_derivative():
    rng = np.random.default_rng(4)
    base = _weights_only("base", random_responses(rng, layers=4))
    same = weight_test(base, base)
    assert same.p_value < 1e-12 and same.mean_cosine == pytest.approx(1.0)
    assert same.matched == 28 and [layer[:2] for layer in same.layers] == [(i, i) for i in range(4)]
    derived = weight_test(_weights_only("ft", perturbed(base.responses, rng, 0.3)), base)
    assert derived.p_value < 1e-12 and 0.8 < derived.mean_cosine < 1.0
    assert all(c > 0.8 for _, _, c in derived.layers)


def test_weight_test_false_positives_on_unrelated_weights():
    # An honest false-positive check: independent random responses, 100 seeded trials.
    passed = 0
    ps = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        a = _weights_only("a", random_responses(rng))
        b = _weights_only("b", random_responses(rng))
        p = weight_test(a, b).p_value
        ps.append(p)
        passed += p > 0.01
    assert passed >= 95
    assert all(0.0 <= p <= 1.0 for p in ps) and np.median(ps) > 0.2  # not concentrated near 0


def test_weight_test_with_layers_removed_matches_in_order_and_pays_for_it():
    rng = np.random.default_rng(5)
    base = _weights_only("base", random_responses(rng, layers=4))
    kept = {f"layers.{new}.{k.split('.')[2]}": v for k, v in base.responses.items()
            for old, new in ((0, 0), (2, 1), (3, 2)) if k.startswith(f"layers.{old}.")}  # fmt: skip
    pruned = weight_test(_weights_only("pruned", kept), base)
    assert [layer[:2] for layer in pruned.layers] == [(0, 0), (1, 2), (2, 3)]
    assert pruned.p_value < 1e-9
    # The correction for the C(4, 3) matchings: never smaller than the index-matched test would be.
    same_depth = weight_test(_weights_only("x", kept), _weights_only("y", kept))
    assert pruned.p_value >= same_depth.p_value


def test_weight_test_without_shared_tensors_is_no_match():
    rng = np.random.default_rng(6)
    a = _weights_only("a", random_responses(rng))
    assert weight_test(a, _weights_only("empty", {})) is NO_MATCH
    other_shape = _weights_only("b", {k: rng.normal(size=(12, 4)).astype(np.float32) for k in a.responses})
    assert weight_test(a, other_shape).p_value == 1.0
