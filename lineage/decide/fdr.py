"""Benjamini-Hochberg across a scan's suspects: a level for many tests at once.

`alpha` bounds the chance that one unrelated suspect is called derived, so a scan of N unrelated suspects
expects up to `alpha x N` false accusations: 10,000 in a million at 1%. Benjamini-Hochberg (1995) bounds
instead the expected share of false accusations among the suspects called derived (the false discovery
rate) by `q`, whatever N: with the p-values sorted, `p_(1) <= ... <= p_(m)`, it rejects the `k` smallest,
`k` the largest rank with `p_(k) <= k q / m`. Valid for independent p-values and for positively dependent
ones (Benjamini and Yekutieli 2001), which suspects scored against one set of references are.

Pure functions on floats: `lineage.jobs.scan` applies them to the suspects' verdicts after classification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def benjamini_hochberg(p_values: Sequence[float | None], q: float) -> list[bool]:
    """Which p-values Benjamini-Hochberg rejects at level `q` (None: no test ran, never rejected, not counted).

    Args:
        p_values: one per suspect; None where no test could run.
        q: the false discovery rate, in (0, 1).

    Returns:
        One flag per p-value: True where the null (not derived) is rejected.

    Raises:
        ValueError: `q` outside (0, 1), or a p-value outside [0, 1] or NaN.

    Example:
        >>> benjamini_hochberg([0.001, 0.03, 0.04, 0.5, None], q=0.05)
        [True, False, False, False, False]
    """
    for p in p_values:
        if p is not None and not 0.0 <= p <= 1.0:  # also NaN
            raise ValueError(f"not a p-value: {p!r}")
    logs = [None if p is None else (math.log10(p) if p > 0.0 else -math.inf) for p in p_values]
    return benjamini_hochberg_log10(logs, q)


def benjamini_hochberg_log10(log10_p: Sequence[float | None], q: float) -> list[bool]:
    """`benjamini_hochberg` on base-10 logarithms of the p-values, which may lie below the float range
    (a derivative's p-value can be 1e-400: as a float it would be 0 and tie with every other such one).

    Raises:
        ValueError: `q` outside (0, 1), or a logarithm above 0 or NaN.
    """
    if not 0.0 < q < 1.0:
        raise ValueError("q must be in (0, 1)")
    tested = [(x, i) for i, x in enumerate(log10_p) if x is not None]
    for x, _ in tested:
        if not x <= 0.0:  # also NaN
            raise ValueError(f"not the log10 of a p-value: {x!r}")
    m = len(tested)
    ranked = sorted(tested)
    cut = max((k for k, (x, _) in enumerate(ranked, start=1) if x <= math.log10(k * q / m)), default=0)
    rejected = [False] * len(log10_p)
    for _, i in ranked[:cut]:
        rejected[i] = True
    return rejected


def expected_false_accusations(derived: int, suspects: int, alpha: float, q: float | None) -> float:
    """An upper bound on the expected number of suspects falsely called derived.

    Per-suspect level `alpha` alone: at most `alpha x suspects` (each unrelated suspect is accused with
    probability at most alpha). With Benjamini-Hochberg at `q` on top: also at most `q x derived` (the false
    discovery rate times the number accused); the smaller bound holds.

    Example:
        >>> expected_false_accusations(derived=12, suspects=1000, alpha=0.01, q=0.05)
        0.6
    """
    bound = alpha * suspects
    if q is not None:
        bound = min(bound, q * derived)
    return round(bound, 10)
