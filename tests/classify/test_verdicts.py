"""Verdicts: one per suspect, the same alone and in any batch; the JSON schema; the test behind `derived`
(the sign-flip weight test, its tail bound, the Sidak correction) checked on what it claims.

Synthetic fingerprints (`synth.py`) carry sketches and identity responses, so every stage of a verdict runs:
distances, the K-Means cluster, the weight test, the calibrated family threshold. The weight test's false-
positive rate on real models is measured by `tests/calibration` on a battery of trained and random models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage import __version__
from lineage.compare.identity import GROUPS, NO_MATCH, weight_test
from lineage.compare.signs import log10_rademacher_tail, sign_test
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.pvalues import format_p, sidak, sidak_log10
from lineage.decide.verdict import DERIVED, RELATED, UNKNOWN, VERDICTS, Verdict
from lineage.fingerprint import save_fingerprint
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
        assert {"reference", "family", "distance", "p_value", "log10_p", "group"} <= set(entry)
        assert entry["reference"] in references and 0.0 < entry["p_value"] <= 1.0 and entry["log10_p"] <= 0
    distances = [n["distance"] for n in doc["nearest"]]
    assert distances == sorted(distances) and distances[0] == pytest.approx(min(doc["distances"].values()))
    assert sorted(doc["distances"]) == sorted(references)
    assert {"alpha", "related_distance"} <= set(doc["threshold"])
    assert 0.0 < doc["threshold"]["alpha"] < 0.5
    assert doc["p_value"] == pytest.approx(10 ** max(doc["log10_p"], -300), rel=1e-9)
    evidence = doc["evidence"]
    assert {"weight", "circuits", "family", "basis"} <= set(evidence)
    weight = evidence["weight"]
    assert {g["group"] for g in weight["groups"]} <= set(GROUPS)
    assert weight["group"] in {g["group"] for g in weight["groups"]}
    layers = weight["layers"]  # the per-layer agreement with the best reference
    assert all({"layer", "reference_layer", "agreement"} == set(layer) for layer in layers)
    assert all(isinstance(layer["agreement"], float) for layer in layers)
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
    assert lines[0].split() == ["model", "verdict", "family", "p_value", "distance", "nearest", "path"]
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
    words = [" ".join(line.split()[1:4]) for line in lines]
    assert words == ["derived from b", "related to f", "unknown unknown 9.0e-01"]


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


# --- sidak, the p-value text -----------------------------------------------------------------------------


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


def test_sidak_in_log_space_agrees_and_goes_below_the_float_floor():
    for log10_p in (-0.5, -3.0, -11.0, -13.0, -40.0):
        for tries in (1, 7, 1000):
            assert sidak_log10(log10_p, tries) == pytest.approx(math.log10(sidak(10**log10_p, tries)), abs=1e-9)
    assert sidak_log10(-500.0, 10) == pytest.approx(-499.0)
    assert sidak_log10(-0.001, 1000) == 0.0  # never above 1


def test_p_values_never_print_as_zero():
    assert format_p(0.0) == "< 1e-300" and format_p(1e-300, -412.5) == "< 1e-300"
    assert format_p(1.23e-56) == "1.2e-56" and format_p(0.5) == "5.0e-01" and format_p(None) == "-"


# --- the sign-flip bound ----------------------------------------------------------------------------------


def test_the_tail_bound_holds_against_every_sign_pattern():
    # Exact enumeration of all 2^12 sign patterns: the bound must cover the true tail at every threshold.
    rng = np.random.default_rng(11)
    for trial in range(6):
        sizes = np.abs(rng.standard_t(df=2, size=12)) if trial % 2 else rng.uniform(0.1, 1.0, 12)
        signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 12)).reshape(12, -1).T
        sums = signs @ sizes
        scale = float(np.sqrt(np.sum(sizes**2)))
        for t in np.linspace(0.0, sums.max(), 25):
            exact = float(np.mean(sums >= t - 1e-12))
            assert exact <= 10 ** log10_rademacher_tail(t / scale) * (1 + 1e-9), (trial, t)


def test_sign_test_of_agreeing_and_of_coin_flip_terms():
    agree = sign_test(np.full(100, 0.9))
    assert agree.z == pytest.approx(10.0) and agree.log10_p < -20 and agree.mean == pytest.approx(0.9)
    assert sign_test(np.zeros(7)).log10_p == 0.0 and sign_test(np.array([])).signs == 0
    # Terms whose signs are coins: the p-values are (conservatively) uniform, whatever the sizes.
    rng = np.random.default_rng(12)
    ps = np.array([sign_test(rng.choice([-1, 1], 50) * rng.exponential(size=50)).p_value for _ in range(4000)])
    for a in (0.01, 0.05, 0.2):
        assert np.mean(ps <= a) <= a + 3 * math.sqrt(a / len(ps))
    assert np.mean(ps <= 0.2) > 0.2 / 3.18 * 0.75  # conservative by at most the bound's constant, not blind
    assert sign_test(np.full(10_000, 1.0)).log10_p < -300  # far below the float floor, still a number


# --- the weight test -----------------------------------------------------------------------------------


def _identity_fp(name: str, identity: dict[str, np.ndarray]):  # noqa: ANN202
    rng = np.random.default_rng(0)
    return sketch_fingerprint(name, random_sketches(rng), features(rng), identity)


def _layers(identity: dict[str, np.ndarray], order: list[int]) -> dict[str, np.ndarray]:
    """The identity responses of a model whose layers are `order` of the given one (surgery)."""
    out = {k: v for k, v in identity.items() if not k.startswith("layers.")}
    for new, old in enumerate(order):
        out |= {f"layers.{new}.{k.split('.')[2]}": v for k, v in identity.items() if k.startswith(f"layers.{old}.")}
    return out


def test_weight_test_of_a_derivative_finds_every_group():
    rng = np.random.default_rng(4)
    base = _identity_fp("base", random_responses(rng, layers=4))
    derived = weight_test(_identity_fp("ft", perturbed(base.identity, rng, 0.3)), base)
    assert derived.log10_p < -12
    assert {g.name for g in derived.groups} == set(GROUPS)
    for g in derived.groups:
        assert g.test.log10_p < -3 and 0.7 < g.test.mean < 1.0, g
    attention = next(g for g in derived.groups if g.name == "attention")
    assert [layer[:2] for layer in attention.layers] == [(i, i) for i in range(4)]


def test_weight_test_lines_up_pruned_and_upscaled_layers():
    rng = np.random.default_rng(5)
    base = _identity_fp("base", random_responses(rng, layers=6))
    for order in ([0, 1, 4, 5], [0, 1, 2, 3, 2, 3, 4, 5]):  # layers removed; layers repeated (SOLAR)
        child = _identity_fp("child", perturbed(_layers(base.identity, order), rng, 0.2))
        result = weight_test(child, base)
        assert result.log10_p < -12
        for name in ("attention", "ffn units"):
            group = next(g for g in result.groups if g.name == name)
            assert [b for _, b, _ in group.layers] == order, (name, group.layers)


def test_weight_test_undoes_a_neuron_permutation_and_survives_a_rotation_of_the_residual_stream():
    rng = np.random.default_rng(7)
    base = _identity_fp("base", random_responses(rng, layers=3))
    moved = dict(base.identity)
    for key in [k for k in moved if k.split(".")[-1] in ("gate", "up", "down")]:
        layer = key.split(".")[1]
        perm = np.random.default_rng(int(layer)).permutation(moved[key].shape[0])
        moved[key] = moved[key][perm]
    for key in [k for k in moved if k == "embed" or k.split(".")[-1].startswith("resid")]:
        moved[key] = rng.normal(size=moved[key].shape).astype(np.float32)  # a rotation redraws these
    result = weight_test(_identity_fp("disguised", perturbed(moved, rng, 0.1)), base)
    assert next(g for g in result.groups if g.name == "ffn units").test.log10_p < -12 and result.log10_p < -12
    assert next(g for g in result.groups if g.name == "ffn").test.log10_p > -3  # blind, as it should be


def test_weight_test_without_anything_to_compare_is_no_match():
    rng = np.random.default_rng(6)
    a = _identity_fp("a", random_responses(rng))
    assert weight_test(a, _identity_fp("empty", {})) is NO_MATCH
    assert NO_MATCH.p_value == 1.0 and NO_MATCH.log10_p == 0.0
