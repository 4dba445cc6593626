"""The unknown threshold, on synthetic data where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom
from scipy.stats import t as student_t

from lineage.decide.calibrate import calibrate_threshold, fixed_threshold, null_distances
from lineage.decide.kmeans import FamilyClassifier


def test_null_is_every_cross_family_pair_once():
    d = np.array(
        [
            [0.0, 0.2, 1.0, 3.0],
            [0.2, 0.0, 0.8, 2.0],
            [1.0, 0.8, 0.0, 1.5],
            [3.0, 2.0, 1.5, 0.0],
        ]
    )
    # families a, a, b, c: the a-a pair (0.2) is related, not part of the null
    assert sorted(null_distances(d, ["a", "a", "b", "c"]).tolist()) == [0.8, 1.0, 1.5, 2.0, 3.0]


def test_threshold_is_the_log_normal_prediction_bound():
    d = np.array([[0.0, 1.0, 1.2, 0.9], [1.0, 0.0, 1.1, 1.3], [1.2, 1.1, 0.0, 1.0], [0.9, 1.3, 1.0, 0.0]])
    logs = np.log([1.0, 1.2, 0.9, 1.1, 1.3, 1.0])
    per_pair = 1 - 0.95 ** (1 / 4)
    expected = math.exp(logs.mean() - student_t.ppf(1 - per_pair, 3) * logs.std(ddof=1) * math.sqrt(1 + 1 / 4))
    cal = calibrate_threshold(d, ["a", "b", "c", "d"], alpha=0.05)
    assert cal.rule == "calibrated" and cal.threshold == pytest.approx(expected)
    assert cal.threshold < min(cal.null)


@pytest.mark.parametrize("n_refs", [3, 8])
def test_unrelated_models_are_claimed_at_most_alpha_of_the_time(n_refs):
    # Log-normal unrelated distances, known answer: an outsider's nearest distance is a minimum of R draws.
    rng = np.random.default_rng(n_refs)
    claimed = []
    for _ in range(300):
        d = np.zeros((n_refs, n_refs))
        i, j = np.triu_indices(n_refs, k=1)
        d[i, j] = d[j, i] = np.exp(rng.normal(0.0, 0.3, len(i)))
        threshold = calibrate_threshold(d, [f"f{k}" for k in range(n_refs)], alpha=0.05).threshold
        outsiders = np.exp(rng.normal(0.0, 0.3, (20, n_refs))).min(axis=1)
        claimed.append(np.mean(outsiders < threshold))
    assert np.mean(claimed) <= 0.06


def test_too_few_references_fall_back_to_the_pair_distance():
    d = np.array([[0.0, 0.5], [0.5, 0.0]])
    cal = calibrate_threshold(d, ["a", "b"])
    assert cal.threshold == pytest.approx(0.5) and "too few" in cal.note


def test_one_family_has_nothing_to_calibrate():
    cal = calibrate_threshold(np.zeros((2, 2)), ["a", "a"])
    assert math.isinf(cal.threshold) and "one family" in cal.note
    assert cal.to_dict()["threshold"] is None


def test_identical_references_of_two_families_give_zero():
    assert calibrate_threshold(np.zeros((3, 3)), ["a", "b", "c"]).threshold == 0.0


def test_fixed_and_off_thresholds():
    assert fixed_threshold(7.0).rule == "fixed"
    assert fixed_threshold(math.inf).rule == "off"
    with pytest.raises(ValueError):
        fixed_threshold(-1.0)
    with pytest.raises(ValueError):
        calibrate_threshold(np.zeros((2, 2)), ["a", "b"], alpha=0.7)


def test_sketch_catalogs_flag_outsiders_and_keep_derivatives(make_family_sketches):
    claimed, false_derived = [], []
    for seed in range(3):
        bases, families, suspects, truth = make_family_sketches(
            n_families=6, per_family=3, outsiders=60, noise=0.3, seed=seed
        )
        run = FamilyClassifier(method="lineage").fit(bases, families).classify(suspects)
        derivatives = [(r, t) for r, t in zip(run.results, truth) if t != "unknown"]
        outsiders = [r for r, t in zip(run.results, truth) if t == "unknown"]
        # No false unknowns: every derivative is derived from its own base, with a small p-value.
        assert all(r.verdict == "derived" and r.family == t and r.base == f"base{t[3:]}" for r, t in derivatives)
        assert all(r.p_value < run.results[0].threshold["alpha"] for r, _ in derivatives)
        assert 0.5 < run.calibration.threshold < 1.0  # unrelated sketches sit near 1, derivatives near 0
        flagged = [r for r in outsiders if r.verdict == "unknown"]
        assert all(r.family == "unknown" and r.base is None for r in flagged)
        assert all(r.distance > run.calibration.threshold for r in flagged)
        assert all(0.0 <= r.p_value <= 1.0 for r in run.results)
        claimed.append(1 - len(flagged) / len(outsiders))
        false_derived += [r.verdict == "derived" for r in outsiders]
    assert np.mean(claimed) <= 0.1
    # An outsider's weights share no base's: each is called derived with probability at most alpha (0.1% by
    # default, Sidak-corrected for the six bases), so the 180 outsiders allow the count a binomial exceeds
    # with probability 1e-3 (2 of 180), not 3%.
    alpha = run.results[0].threshold["alpha"]
    assert alpha == 0.001
    assert sum(false_derived) <= binom.ppf(1 - 1e-3, len(false_derived), alpha)


def test_calibration_of_sketches_does_not_depend_on_the_suspects(make_family_sketches):
    bases, families, suspects, _ = make_family_sketches()
    clf = FamilyClassifier(method="lineage").fit(bases, families)
    assert clf.classify(suspects[:2]).calibration.threshold == clf.classify(suspects).calibration.threshold
