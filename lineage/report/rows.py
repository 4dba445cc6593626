"""Result rows: one JSON-ready object per input model, verdict or error, in every command and format.

Every model given is a row, also one that could not be read: a script reading the JSON or CSV must never
lose a model silently. A row says which file it is (`path`), whether it worked (`status`: `ok` or
`error`, with the one-line `error`), and carries the verdict's fields (`Verdict.to_dict`), the nearest
reference by name (`nearest_reference`) and the p-value as text (`p_value_text`: scientific notation,
`< 1e-300` below the float floor, see `lineage.report.numbers`).
"""

from __future__ import annotations

from pathlib import Path

from lineage.report.numbers import verdict_p_text

OK, ERROR = "ok", "error"
STATUSES: tuple[str, ...] = (OK, ERROR)
#: The keys every row adds to a verdict's (`Verdict.to_dict`).
ROW_KEYS: frozenset[str] = frozenset({"nearest_reference", "p_value_text", "path", "status", "error"})


def verdict_row(verdict: object, path: str | Path | None) -> dict:
    """A verdict (`lineage.decide.verdict.Verdict`) as a row, with where its model is."""
    out = verdict.to_dict()
    nearest = out.get("nearest") or []
    out.update(
        nearest_reference=nearest[0].get("reference") if nearest else None,
        p_value_text=verdict_p_text(verdict),
        path=None if path is None else str(path),
        status=OK,
        error=None,
    )
    return out


def error_row(name: str, path: str | Path | None, error: str) -> dict:
    """A model that could not be fingerprinted or judged, as a row: no verdict, its error in one line."""
    return {
        "model": name,
        "verdict": None,
        "derived_from": None,
        "family": None,
        "p_value": None,
        "p_value_text": None,
        "nearest": [],
        "nearest_reference": None,
        "distance": None,
        "distances": {},
        "path": None if path is None else str(path),
        "status": ERROR,
        "error": error,
    }
