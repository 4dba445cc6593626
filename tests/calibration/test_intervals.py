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
