"""The calibration's rates and their exact binomial (Clopper-Pearson) intervals: pure functions, in the
default run (the battery they summarise is built by the slow tests of `test_battery.py`)."""

from __future__ import annotations

import pytest

from lineage.jobs.calibration import clopper_pearson, rates


def test_rates_count_p_values_strictly_below_each_level():
    [r] = rates([0.001, 0.2, 0.5, 0.04, 0.05], (0.05,))
    assert (r.hits, r.n, r.rate) == (2, 5, 0.4) and r.low < 0.4 < r.high
    assert [x.hits for x in rates([0.001, 0.01, 0.05, 0.2], (0.05, 0.01, 0.001))] == [2, 1, 0]


def test_clopper_pearson_intervals_by_value():
    low, high = clopper_pearson(0, 300)
    # No hit: the upper end solves (1 - p)^n = 2.5% (the "rule of three" region); n hits: the mirror image.
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 300), rel=1e-9)
    assert high == pytest.approx(0.0122, abs=2e-4)
    low, high = clopper_pearson(300, 300)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 300), rel=1e-9)
    # One hit in n: the lower end solves 1 - (1 - p)^n = 2.5%.
    low, _ = clopper_pearson(1, 50)
    assert low == pytest.approx(1 - 0.975 ** (1 / 50), rel=1e-9)
    # The README's calibration row: 53 of 4,113 null pairs at alpha 0.05 -> [0.97%, 1.68%].
    low, high = clopper_pearson(53, 4113)
    assert (round(100 * low, 2), round(100 * high, 2)) == (0.97, 1.68)
    wide, narrow = clopper_pearson(5, 100), clopper_pearson(5, 100, level=0.5)
    assert wide[0] < narrow[0] < 0.05 < narrow[1] < wide[1]
    assert clopper_pearson(0, 0) == (0.0, 1.0)


def test_the_binomial_bound_is_the_99th_percentile_of_a_valid_tests_count():
    from scipy.stats import binom

    from lineage.jobs.calibration import binomial_bound

    assert binomial_bound(1000, 0.05) == binom.ppf(0.99, 1000, 0.05) == 67
    assert binomial_bound(1000, 0.001) == 4 and binomial_bound(0, 0.05) == 0


def test_each_tier_is_counted_at_every_level_and_flagged_over_its_bound():
    from lineage.jobs.calibration import _tiers

    null = [{"p_value": p} for p in [0.0001] * 5 + [0.5] * 995]
    groups = {"embedding": [0.5] * 1000, "ffn units": [0.02] * 100}
    matched = [{"derived": i < 2} for i in range(500)]
    verdicts = {"independent_p_values": [0.9, 0.04], "references": 3}
    tiers = {t["tier"].strip(): t for t in _tiers(null, groups, matched, verdicts)}
    assert list(tiers) == ["weight test (exact), every null pair", "group embedding (exact, uncorrected)",
                           "group ffn units (exact, uncorrected)", "unit matching (empirical null, one rule)",
                           "verdicts: independents vs 3 bases"]  # fmt: skip
    weight = tiers["weight test (exact), every null pair"]["rates"]
    assert [(r["hits"], r["within"]) for r in weight] == [(5, True), (5, True), (5, False)]  # bound 4 at 0.1%
    units = tiers["group ffn units (exact, uncorrected)"]["rates"]
    assert [(r["hits"], r["within"]) for r in units] == [(100, False), (0, True), (0, True)]
    assert [r["hits"] for r in tiers["unit matching (empirical null, one rule)"]["rates"]] == [2, 2, 2]
    assert [r["hits"] for r in tiers["verdicts: independents vs 3 bases"]["rates"]] == [1, 0, 0]


def test_the_tiers_are_printed_with_their_bounds(capsys):
    from lineage.cli.evaluate import _print_tiers
    from lineage.jobs.calibration import _tiers

    _print_tiers(_tiers([{"p_value": 0.0001}] * 5 + [{"p_value": 0.5}] * 995, {}, [], {}))
    out = capsys.readouterr().out
    assert "weight test (exact), every null pair" in out and "5/67 ok" in out and "5/4 OVER" in out


def test_the_power_table_keeps_one_column_for_every_kind(capsys):
    from pathlib import Path

    from lineage.cli.evaluate import _print_calibration
    from lineage.jobs.calibration import _power

    def found(log10_p: float) -> dict:
        return {"log10_p": log10_p, "matching": {"derived": True}}

    power = {"int4": _power([found(-167.3)], False), "disguised-signed-int4": _power([found(0.0)], True)}
    result = {"null": {"pairs": 0, "rates": [], "by_kind": {}}, "power": power, "verdicts": {}}
    _print_calibration(result, Path("models_manifest.csv"), None)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip().split(" ")[0] in power]
    assert [row.split()[0] for row in rows] == ["int4", "disguised-signed-int4"]
    assert "(blind spot" in rows[1] and "unit matching 1/1" in rows[1]
    # Each kind's counts start in the same column, however long the kind's name.
    assert len({row.index("/1 / ") for row in rows}) == 1, rows


def test_without_the_null_pairs_only_the_derivatives_and_the_verdicts_are_measured(tmp_path, monkeypatch, capsys):
    import numpy as np

    import lineage.jobs.evaluate as evaluate
    from lineage.cli.evaluate import _print_calibration
    from lineage.jobs.calibration import calibrate
    from tests.classify.synth import features, perturbed, random_responses, random_sketches, sketch_fingerprint

    rng = np.random.default_rng(0)
    base = random_responses(rng, layers=2)
    identities = {"a": base, "a-ft": perturbed(base, rng, 0.2), "b": random_responses(rng, layers=2),
                  "c": random_responses(rng, layers=2)}  # fmt: skip
    fps = {n: sketch_fingerprint(n, random_sketches(rng), features(rng), x) for n, x in identities.items()}
    rows = ["name,path,family,base,role,derivation", "a,a,fa,,base,", "a-ft,a-ft,fa,a,derivative,finetune",
            "b,b,fb,,base,", "c,c,fc,,independent,"]  # fmt: skip
    for name in identities:
        (tmp_path / name).mkdir()
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(evaluate, "_fingerprints", lambda manifest, options, progress: fps)
    full, quick = calibrate(tmp_path / "m.csv"), calibrate(tmp_path / "m.csv", null_pairs=False)
    assert full["null"]["measured"] and full["null"]["pairs"] > 0
    assert not quick["null"]["measured"] and quick["null"]["pairs"] == 0 and quick["p_values"] == []
    assert quick["power"] == full["power"] and quick["verdicts"] == full["verdicts"]
    assert quick["power"]["finetune"]["derived_at"]["0.001"] == 1
    assert not any(t["tier"].startswith(("weight test", "  group")) for t in quick["tiers"])
    _print_calibration(quick, tmp_path / "m.csv", None)
    out = capsys.readouterr().out
    assert "not tested (--no-null-pairs)" in out and "finetune" in out and "by kind" not in out
