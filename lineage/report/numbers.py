"""Numbers for people: p-values in scientific notation and never as 0, distances at a fixed precision.

A p-value spans hundreds of orders of magnitude (a derivative's is 1e-56, an unrelated model's 0.4), so
fixed decimals would print most of them as `0.0000`. Doubles stop at about 1e-308, and a test may know its
p-value only as a logarithm below that (`log10_p`, when a verdict carries one): such a value, like a float
that underflowed to 0, is reported as the bound `< 1e-300`, never as 0. Files keep the float (`p_value`,
floored at the bound by the test) and add its text (`p_value_text`), so a script never parses `<`.
"""

from __future__ import annotations

import math

#: p-values below this are reported as `< 1e-300`.
P_FLOOR = 1e-300
P_FLOOR_TEXT = "< 1e-300"
NONE_TEXT = "-"


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
    if (log10_p is not None and log10_p < math.log10(P_FLOOR)) or p_value < P_FLOOR:
        return P_FLOOR_TEXT
    return f"{p_value:.1e}"


def format_p(p_value: float | None, log10_p: float | None = None) -> str:
    """`p_value_text`, with `-` for no p-value (tables)."""
    return p_value_text(p_value, log10_p) or NONE_TEXT


def row_p_text(row: dict) -> str | None:
    """The p-value text of a result row (its `p_value` and, when present, `log10_p`)."""
    return p_value_text(row.get("p_value"), row.get("log10_p"))


def verdict_p_text(verdict: object) -> str | None:
    """The p-value text of a `Verdict` (its `log10_p` used when the verdict has one)."""
    return p_value_text(getattr(verdict, "p_value", None), getattr(verdict, "log10_p", None))


def format_distance(value: float | None) -> str:
    """A distance at 4 decimals (`-` for none)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NONE_TEXT
    return f"{value:.4f}"
