"""p-values as a verdict carries and prints them: corrected for many references, never 0, never lost below
the float floor.

A p-value spans hundreds of orders of magnitude (a derivative's is 1e-56, an unrelated model's 0.4), and the
weight test knows many only as a logarithm far below the smallest double (`log10_p`). Corrections are done
in log space; a float p-value is floored at 1e-300 (a valid bound: the true one is at most that); text is
scientific notation, and `< 1e-300` below the floor, never 0. Files keep the float (`p_value`) and add the
text (`p_value_text`), so a script never parses `<`.
"""

from __future__ import annotations

import math

#: p-values below this are reported as `< 1e-300`.
P_FLOOR = 1e-300
P_FLOOR_LOG10 = -300.0
P_FLOOR_TEXT = "< 1e-300"
NONE_TEXT = "-"


def sidak(p: float, tries: int) -> float:
    """`1 - (1 - p)^tries`: the chance that the best of `tries` unrelated references looks this related."""
    if p >= 1.0:
        return 1.0
    return float(-math.expm1(tries * math.log1p(-p)))  # exact for tiny p, where 1 - (1 - p)^R rounds to 0


def sidak_log10(log10_p: float, tries: int) -> float:
    """`sidak` on a log10 p-value, exact where the p-value is a double and `log10(tries) + log10_p` below."""
    if log10_p > -12:
        return math.log10(max(sidak(10.0**log10_p, tries), P_FLOOR))
    return min(0.0, log10_p + math.log10(tries))  # 1 - (1 - p)^R = R p to within R p^2


def p_from_log10(log10_p: float) -> float:
    """The float of a log10 p-value, floored at 1e-300 (a valid bound: the p-value is at most that)."""
    return 10.0 ** max(log10_p, P_FLOOR_LOG10)


def p_value_text(p_value: float | None, log10_p: float | None = None) -> str | None:
    """A p-value in scientific notation (`1.2e-56`, `3.1e-01`), `< 1e-300` below the floor, None for none.

    Args:
        p_value: the p-value (None when no test ran).
        log10_p: its base-10 logarithm, when known beyond the float range.

    Example:
        >>> p_value_text(1.23e-56), p_value_text(0.0), p_value_text(1e-300, log10_p=-412.5), p_value_text(None)
        ('1.2e-56', '< 1e-300', '< 1e-300', None)
    """
    if p_value is None or (isinstance(p_value, float) and math.isnan(p_value)):
        return None
    if (log10_p is not None and log10_p < P_FLOOR_LOG10) or p_value < P_FLOOR:
        return P_FLOOR_TEXT
    return f"{p_value:.1e}"


def format_p(p_value: float | None, log10_p: float | None = None) -> str:
    """`p_value_text`, with `-` for no p-value (tables, rule sentences)."""
    return p_value_text(p_value, log10_p) or NONE_TEXT
