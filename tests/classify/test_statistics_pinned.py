"""The p-value path pinned by value: the sign test's direction and tail, the weight test's groups and their
correction, the verdict's correction for the references tried and its choice of the best one.

Each test is named for what it pins and fails under a plausible bug of that step that would accuse an
innocent model or lose a derivative (`tools/mutate.py` applies them one at a time): a tail taken two-sided, a
z of `|sum f|`, the Sidak correction dropped, the nearest reference taken for the smallest p-value, the
reference's anchor rows read at the suspect's positions, an FFN-unit term reading one response. The Monte-
Carlo null checks the weight test's false-positive rate against `alpha / 3.18`, where a valid test of many
terms sits (the bound is 3.18 times the Gaussian tail, which such sums follow), so an inflation the bound's
slack would hide against `alpha` shows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from lineage.compare.identity import GROUPS, weight_test
from lineage.compare.signs import BD_CONSTANT, log10_rademacher_tail, sign_test
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.pvalues import sidak, sidak_log10
from lineage.decide.verdict import DERIVED
from lineage.fingerprint import Fingerprint

from .synth import COORDS, MIXTURES, SYMMETRY, UNITS, features, perturbed, random_responses, random_sketches

P = 16  # anchors of the synthetic fingerprints (tests.classify.synth)


def _fp(name: str, identity: dict[str, np.ndarray], sketches: dict[str, np.ndarray] | None = None,
        anchors: np.ndarray | None = None, tokens: tuple[str, ...] = ()) -> Fingerprint:  # fmt: skip
    """A fingerprint with the given identity responses (stored as float16, as the pipeline stores them)."""
    rng = np.random.default_rng(0)
    return Fingerprint(
        name=name,
        tensorguard=features(rng),
        anchors=np.arange(P, dtype=np.int64) if anchors is None else anchors,
        sketches=random_sketches(rng) if sketches is None else sketches,
        identity={k: np.asarray(v, dtype=np.float16) for k, v in identity.items()},
        settings={"symmetry": SYMMETRY},
        anchor_tokens=tokens,
        anchor_basis="tokens" if tokens else "ids",
    )


def _group(result, name: str):  # noqa: ANN001, ANN202
    return next(g for g in result.groups if g.name == name)


# --- the sign test: one-sided, the Bentkus-Dzindzalieta bound by value ----------------------------------


def test_bound_constant_is_bentkus_dzindzalieta_3_18():
    assert BD_CONSTANT == pytest.approx(1.0 / (4.0 * norm.sf(math.sqrt(2.0))), rel=1e-12)
    assert round(BD_CONSTANT, 2) == 3.18


def test_tail_is_one_sided_and_equals_3_18_times_the_gaussian_tail_by_value():
    # min(1, c * P(N(0,1) >= z)) for every z, negative ones included (a two-sided tail would make them small).
    for z in [-40.0, -8.0, -3.0, -1.0, -0.2, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0]:
        expected = min(0.0, (math.log(BD_CONSTANT) + norm.logsf(z)) / math.log(10.0))
        assert log10_rademacher_tail(z) == pytest.approx(expected, rel=1e-9, abs=1e-12), z
    assert log10_rademacher_tail(-3.0) == 0.0 and log10_rademacher_tail(2.0) < math.log10(0.08)
    assert log10_rademacher_tail(math.inf) == -math.inf and log10_rademacher_tail(-math.inf) == 0.0


def test_sign_test_of_all_negative_terms_has_p_one():
    # Strongly anti-correlated responses are not evidence of descent: the test is one-sided.
    for n in (8, 100, 5000):
        t = sign_test(-np.full(n, 0.7))
        assert t.z == pytest.approx(-math.sqrt(n)) and t.log10_p == 0.0 and t.p_value == 1.0
        assert t.mean == pytest.approx(-0.7)
    mostly_negative = sign_test(np.r_[-np.ones(40), np.ones(10)])
    assert mostly_negative.z == pytest.approx(-30 / math.sqrt(50)) and mostly_negative.p_value == 1.0


def test_sign_test_drops_non_finite_terms():
    # A NaN term would make z NaN; it carries no evidence either way and is left out, not counted.
    clean = sign_test(np.r_[np.ones(20), -np.ones(5)])
    assert sign_test(np.r_[np.ones(20), np.nan, -np.ones(5), np.inf]) == clean
    assert clean.signs == 25 and sign_test(np.full(5, np.nan)).log10_p == 0.0


def test_tail_of_a_nan_z_is_no_evidence():
    # A NaN z (a degenerate sum reaching the tail directly) is p = 1, never p = 0; infinities keep their side.
    assert log10_rademacher_tail(math.nan) == 0.0
    assert log10_rademacher_tail(-math.inf) == 0.0 and log10_rademacher_tail(math.inf) == -math.inf


def test_sign_test_z_is_the_signed_sum_over_the_norm_and_p_its_tail():
    rng = np.random.default_rng(1)
    for _ in range(20):
        f = rng.normal(0.2, 1.0, int(rng.integers(8, 200)))
        t = sign_test(f)
        z = float(f.sum() / np.sqrt((f * f).sum()))
        assert t.z == pytest.approx(z, rel=1e-9)
        assert t.p_value == pytest.approx(min(1.0, BD_CONSTANT * norm.sf(z)), rel=1e-9)


# --- the weight test: its groups, the Bonferroni factor, which rows it compares ----------------------------


def test_weight_test_p_is_the_smallest_group_times_the_number_of_groups_tested():
    rng = np.random.default_rng(21)
    base = random_responses(rng, layers=3)
    residual_only = {k: v for k, v in base.items() if k == "embed" or k.split(".")[-1].startswith("resid")}
    seeded_only = {k: v for k, v in base.items() if k == "embed" or k.split(".")[-1].startswith("seeded")}
    for identity, count in ((base, 7), (residual_only, 3), (seeded_only, 2)):
        a = _fp("a", perturbed(identity, rng, 2.5))  # a weak derivative: every group in the float range
        result = weight_test(a, _fp("b", identity))
        assert len(result.groups) == count
        smallest = min(g.test.log10_p for g in result.groups)
        assert result.group == min(result.groups, key=lambda g: g.test.log10_p).name
        assert -12 < smallest < -2
        assert result.log10_p == pytest.approx(smallest + math.log10(count), abs=1e-9)


def _rows(identity: dict[str, np.ndarray], rows, rng, new: int = 0, before: int = 0) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Identity responses of a copy whose anchor rows are `before` new rows, the base's `rows`, then `new` new
    rows (new rows drawn at random); the unit profiles, read on anchor mixtures, as they are."""
    out = {}
    for key, value in identity.items():
        if key in ("embed", "head") or key.split(".")[-1].startswith("resid"):
            parts = [rng.normal(size=(before, value.shape[1])), value[rows], rng.normal(size=(new, value.shape[1]))]
            value = np.concatenate(parts).astype(np.float32)
        out[key] = value
    return out


@pytest.mark.parametrize("basis", ["tokens", "ids", "tokens against ids"])
def test_weight_test_reads_each_side_at_its_own_anchor_positions(basis: str):
    # A vocabulary edit moves the shared anchors to other positions in the two fingerprints: the first five
    # of the base's anchors are gone and five new ones come after the rest (by string: new tokens sorting
    # last; by id: larger ids; a tokenizer on one side only: compared by id, its id anchors after its token
    # anchors). Each side's rows must be read at its own positions of the shared anchors, or the residual
    # groups compare unrelated rows and lose every derivative whose vocabulary was edited.
    rng = np.random.default_rng(22)
    identity = random_responses(rng, layers=3)
    identity["head"] = rng.normal(size=(P, COORDS)).astype(np.float32)
    keep, ids = list(range(5, P)), np.arange(P, dtype=np.int64) + 10
    edited_ids = np.r_[ids[keep], np.arange(5) + 10 + P]
    if basis == "tokens":
        words = tuple(f"tok{i:02d}" for i in range(P))
        base = _fp("base", identity, anchors=ids, tokens=words)
        new_words = tuple(words[i] for i in keep) + tuple(f"zz{i}" for i in range(5))
        copy = _fp("edited", _rows(identity, keep, rng, new=5), anchors=ids + 300, tokens=new_words)  # other ids
    elif basis == "ids":
        base = _fp("base", identity, anchors=ids)
        copy = _fp("edited", _rows(identity, keep, rng, new=5), anchors=edited_ids)
    else:
        base = _fp("base", identity, anchors=ids)
        words = tuple(f"tok{i:02d}" for i in range(P))  # P token anchors (of ids 500...), then the id anchors
        copy = _fp("edited", _rows(identity, keep, rng, new=5, before=P), anchors=np.r_[np.arange(P) + 500, edited_ids],
                   tokens=words)  # fmt: skip
    result = weight_test(copy, base)
    for name in ("embedding", "attention", "ffn"):
        g = _group(result, name)
        # Every shared row is the base's own: each coordinate's term is a cosine of equal columns.
        assert g.test.signs == COORDS and g.test.mean == pytest.approx(1.0, abs=1e-6), name
        assert g.test.z == pytest.approx(math.sqrt(COORDS), rel=1e-6), name
    for name in ("attention", "ffn"):
        assert [layer[:2] for layer in _group(result, name).layers] == [(0, 0), (1, 1), (2, 2)]
    assert weight_test(base, copy).log10_p == pytest.approx(result.log10_p, abs=1e-9)


def test_ffn_unit_term_is_the_mean_of_the_up_and_down_cosines():
    # Each FFN unit's term is 0.5 (cos up + cos down) over the mixtures, units matched by their gate profiles:
    # a copy with every up (or down) response redrawn keeps half its agreement, and the term is pinned by value.
    rng = np.random.default_rng(23)
    identity = random_responses(rng, layers=2)
    base = _fp("base", identity)

    def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = x.astype(np.float16).astype(np.float64), y.astype(np.float16).astype(np.float64)
        return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)

    for redrawn in ("up", "down"):
        changed = dict(identity)
        for i in range(2):
            changed[f"layers.{i}.{redrawn}"] = rng.normal(size=(UNITS, MIXTURES)).astype(np.float32)
        group = _group(weight_test(_fp("copy", changed), base), "ffn units")
        terms = np.concatenate([
            0.5 * (cos(changed[f"layers.{i}.up"], identity[f"layers.{i}.up"])
                   + cos(changed[f"layers.{i}.down"], identity[f"layers.{i}.down"]))
            for i in range(2)
        ])  # fmt: skip
        expected = sign_test(terms)
        assert group.test.signs == 2 * UNITS and [layer[:2] for layer in group.layers] == [(0, 0), (1, 1)]
        assert group.test.mean == pytest.approx(expected.mean, abs=1e-6), redrawn
        assert group.test.z == pytest.approx(expected.z, rel=1e-5), redrawn
        assert 0.4 < group.test.mean < 0.6 and group.test.log10_p < -8, redrawn


# --- the verdict: the best reference, corrected for the references tried -----------------------------------


def _references(count: int, rng) -> list[Fingerprint]:  # noqa: ANN001
    return [_fp(f"ref{i}", random_responses(rng, layers=2), sketches=random_sketches(rng)) for i in range(count)]


@pytest.mark.parametrize("count", [1, 3, 10])
def test_verdict_p_is_the_best_raw_p_sidak_corrected_for_the_references_tried(count: int):
    rng = np.random.default_rng(30 + count)
    refs = _references(count, rng)
    families = [f"f{i % 2}" for i in range(count)]  # R references, fewer families: R is what was tried
    clf = FamilyClassifier().fit(refs, families)
    sketches = perturbed(refs[0].sketches, rng, 0.2)
    weak = _fp("weak", perturbed(refs[0].identity, rng, 2.5), sketches=sketches)  # p in the float range
    strong = _fp("strong", perturbed(refs[0].identity, rng, 0.5), sketches=sketches)  # far below it
    outsider = _fp("outsider", random_responses(rng, layers=2))
    for suspect in (weak, strong, outsider):
        raw = [weight_test(suspect, ref).log10_p for ref in refs]
        [v] = clf.predict([suspect])
        assert v.log10_p == pytest.approx(sidak_log10(min(raw), count), abs=1e-9), suspect.name
        assert v.p_value == pytest.approx(sidak(10 ** min(raw), count), rel=1e-9), suspect.name
        # The nearest list carries each reference's raw p-value, uncorrected.
        for entry in v.nearest:
            assert entry["log10_p"] == pytest.approx(raw[int(entry["reference"][3:])], abs=1e-12)
    raw = min(weight_test(weak, ref).log10_p for ref in refs)
    assert -11 < raw < -3  # 1 - (1 - p)^R computed, not R p
    # Derived exactly when the corrected p-value is below alpha: a level just above the raw p-value is not
    # met when R > 1, one just above the corrected p-value is.
    corrected = sidak_log10(raw, count)
    for level, derived in ((raw + 0.01, count == 1), (corrected + 0.01, True)):
        [v] = FamilyClassifier(alpha=10**level).fit(refs, families).predict([weak])
        assert (v.verdict == DERIVED) == derived, v.rule
    assert min(weight_test(strong, ref).log10_p for ref in refs) < -20


def test_best_reference_is_the_smallest_p_value_not_the_nearest():
    # The suspect's sketches are a copy of reference 0's (it is nearest, at distance ~0) but its weights descend
    # from reference 1: the verdict must follow the weight test, not the distance.
    rng = np.random.default_rng(40)
    refs = _references(3, rng)
    clf = FamilyClassifier().fit(refs, ["f0", "f1", "f2"])
    suspect = _fp("graft", perturbed(refs[1].identity, rng, 0.5), sketches=dict(refs[0].sketches))
    [v] = clf.predict([suspect])
    assert v.nearest[0]["reference"] == "ref0" and v.nearest[0]["distance"] < 1e-6
    assert (v.verdict, v.derived_from) == (DERIVED, "ref1"), v.rule
    raw = weight_test(suspect, refs[1]).log10_p
    assert v.evidence["reference"] == "ref1" and v.log10_p == pytest.approx(sidak_log10(raw, 3), abs=1e-9)
    assert weight_test(suspect, refs[0]).log10_p > -2


# --- the Monte-Carlo null of the weight test --------------------------------------------------------------


def test_weight_test_null_rate_is_within_a_binomial_bound_of_alpha_over_3_18():
    # Independent synthetic models of 1-8 layers each (every search the test makes: layers, units): their
    # signs are fair coins, each group's sum of 32-128 terms follows the Gaussian tail, so a p-value below
    # alpha comes at rate about alpha / 3.18 (the bound's constant; groups Bonferroni-combined). Checked there,
    # with a binomial bound at 1e-4, not against alpha: a two-sided tail or a search that peeked at the
    # signs doubles the rate, which alpha itself would allow. Every group's p-values are checked alike.
    pairs = 1000
    total, per_group = [], {name: [] for name in GROUPS}
    for seed in range(pairs):
        rng = np.random.default_rng(7000 + seed)
        la, lb = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        result = weight_test(_fp("a", random_responses(rng, la)), _fp("b", random_responses(rng, lb)))
        total.append(result.log10_p)
        for g in result.groups:
            per_group[g.name].append(g.test.log10_p)
    for name, values in [("weight test", total), *per_group.items()]:
        assert len(values) == pairs, name
        ps = 10.0 ** np.array(values)
        for alpha in (0.2, 0.05, 0.01):
            hits = int(np.sum(ps < alpha))
            assert hits <= binom.ppf(1 - 1e-4, pairs, alpha / BD_CONSTANT), (name, alpha, hits)
        assert np.mean(ps < 0.2) > 0.2 / BD_CONSTANT / 2  # and not blind: the bound's constant is all it loses
    assert np.median(10.0 ** np.array(total)) > 0.5


@pytest.mark.parametrize("group", ["ffn units", "frame units"])
def test_flipping_every_suspect_unit_negates_its_unit_group_exactly(group: str):
    # The null of the unit groups: a unit's sign flip (its up and down responses negated) negates its own term
    # and moves nothing the search reads (layers, units, frame directions: gates and the frame's Gram only). So
    # every unit flipped must give exactly -z: for unrelated pairs, and for derivatives whose frame directions
    # come in another order, where a search that read up or down would pick other partners once they flip.
    prefix = "frame_" if group == "frame units" else ""
    for seed in range(6):
        rng = np.random.default_rng(300 + seed)
        a = random_responses(rng, layers=3)
        if seed % 2:
            b = random_responses(rng, layers=4)
        else:  # a derivative, its frame directions reordered
            b = perturbed(a, rng, 0.5)
            order = rng.permutation(len(b["frame"]))
            b = {k: v[np.ix_(order, order)] if k == "frame" else (v[:, order] if "frame_" in k else v)
                 for k, v in b.items()}  # fmt: skip
        flipped = {k: -v if k.split(".")[-1] in (f"{prefix}up", f"{prefix}down") else v for k, v in a.items()}
        z = {name: next(g for g in weight_test(_fp(name, x), _fp("b", b)).groups if g.name == group).test.z
             for name, x in (("a", a), ("flipped", flipped))}  # fmt: skip
        assert abs(z["a"]) > 0 and z["flipped"] == pytest.approx(-z["a"], abs=1e-9), (seed, z)
