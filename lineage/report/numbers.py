"""Numbers for people: p-values (`lineage.decide.pvalues`: scientific notation, never 0) and distances at a
fixed precision."""

from __future__ import annotations

import math

from lineage.decide.pvalues import NONE_TEXT, P_FLOOR_TEXT, format_p, p_value_text

__all__ = ["NONE_TEXT", "P_FLOOR_TEXT", "format_distance", "format_p", "p_value_text", "row_p_text", "verdict_p_text"]

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
