"""The cache fuzz (`tests/jobs/cache_fuzz.py`): damaged, swapped, truncated entries and weights replaced with
identical metadata (under verify_weights) give no wrong answer and no traceback. A subset by default; the
issue's 500 cases under `-m slow` (`python -m tests.jobs.cache_fuzz --cases 500` prints the counts)."""

from __future__ import annotations

import pytest

from tests.jobs.cache_fuzz import KINDS, fuzz


def _check(cases: int, seed: int) -> None:
    counts = fuzz(cases, seed)
    assert counts.wrong == 0 and counts.tracebacks == 0, "\n".join(counts.failures[:5])
    assert sum(counts.cases.values()) == cases and set(counts.cases) == set(KINDS)
    assert counts.answers == 3 * cases
    assert counts.refused >= cases - counts.cases["replace_weights"] - counts.cases["bitflip"]  # damage was seen


def test_cache_fuzz_subset() -> None:
    _check(12, seed=1)


@pytest.mark.slow
def test_cache_fuzz_500() -> None:
    _check(500, seed=0)
