"""Results as text: aligned tables for the terminal, CSV and JSON, and polars frames for the files.

Every format carries the same rows, one per input model (failed ones with `status` `error` and their
message), and the same columns: the verdict's, then `nearest_reference`, `p_value_text` (the p-value as
text, never 0: `lineage.report.numbers`), `status`, `path` and a scan's labels. In CSV and Parquet the
`distances` dict becomes one column per reference, named `dist:<reference>` so that a reference called
`model` or `family` cannot collide with the fixed columns. The terminal table shows p-values in scientific
notation and paths relative to the current folder when they are under it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lineage.report.numbers import format_p

if TYPE_CHECKING:
    import polars as pl

#: The fixed columns of a verdict, then the ones every row has, then the ones a scan adds (when present).
VERDICT_COLUMNS: tuple[str, ...] = ("model", "verdict", "family", "derived_from", "p_value", "distance")
ROW_COLUMNS: tuple[str, ...] = ("nearest_reference", "p_value_text", "status", "path")
SCAN_COLUMNS: tuple[str, ...] = ("role", "true_family", "true_base", "derivation", "cluster_family", "error")
DISTANCE_PREFIX = "dist:"

_FLOAT_COLUMNS = {"distance", "p_value"}


def _columns(rows: Sequence[dict]) -> list[str]:
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    extra = [c for c in (*ROW_COLUMNS, *SCAN_COLUMNS) if c in present]
    if "error" not in extra and any(r.get("error") for r in rows):
        extra.append("error")
    return [*VERDICT_COLUMNS, *extra]


def _references(rows: Sequence[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for name in r.get("distances") or {}:
            seen.setdefault(name, None)
    return list(seen)


def results_frame(rows: Sequence[dict]) -> pl.DataFrame:
    """Rows (classify or scan objects) as a frame: fixed columns, then `dist:<reference>` columns."""
    import polars as pl  # lazy: a command that prints a table never needs it

    columns, refs = _columns(rows), _references(rows)
    data: dict[str, list] = {c: [r.get(c) for r in rows] for c in columns}
    schema: dict[str, pl.DataType] = {c: pl.Float64 if c in _FLOAT_COLUMNS else pl.Utf8 for c in columns}
    for ref in refs:
        data[DISTANCE_PREFIX + ref] = [(r.get("distances") or {}).get(ref) for r in rows]
        schema[DISTANCE_PREFIX + ref] = pl.Float64
    return pl.DataFrame(data, schema=schema)


def matrix_frame(names: Sequence[str], matrix: np.ndarray) -> pl.DataFrame:
    """A square distance matrix as a frame: a `model` column, then one `dist:<model>` column per model (the
    prefix keeps a model named `model` from overwriting the name column)."""
    import polars as pl

    data: dict[str, list] = {"model": list(names)}
    for j, name in enumerate(names):
        data[DISTANCE_PREFIX + name] = np.asarray(matrix)[:, j].astype(float).tolist()
    return pl.DataFrame(data)


def to_csv(frame: pl.DataFrame) -> str:
    """The frame as CSV text (floats at full precision)."""
    return frame.write_csv()


def to_json(obj: object) -> str:
    """Indented JSON; NaN and infinities become null (JSON has no spelling for them)."""
    return json.dumps(_finite(obj), indent=2)


def _finite(obj: object) -> object:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def format_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    """An aligned text table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in body]
    numeric = [
        bool(body) and all(isinstance(row[j], (int, float)) or row[j] is None for row in body)
        for j in range(len(header))
    ]
    widths = [max([len(h), *(len(r[j]) for r in cells)]) for j, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(header)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def verdict_words(row: dict) -> str | None:
    """A verdict in words: `derived from X`, `related to F`, `unknown`; `error` for a model that failed."""
    verdict = row.get("verdict")
    if verdict is None and row.get("status") == "error":
        return "error"
    if verdict == "derived":
        relation = f" ({row['relation']})" if row.get("relation") else ""
        return f"derived from {row.get('derived_from')}{relation}"
    if verdict == "related":
        return f"related to {row.get('family')}"
    return verdict


def display_path(path: str | Path | None) -> str | None:
    """`path` relative to the current folder when it is under it (shorter in a table), else as it is."""
    if path is None or str(path).startswith("hf:/"):
        return None if path is None else str(path)
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _table_cell(column: str, row: dict) -> object:
    if column == "verdict":
        return verdict_words(row)
    if column == "p_value":
        # Scientific notation: p-values span hundreds of orders of magnitude; never 0 (`< 1e-300`).
        return None if row.get("p_value") is None else format_p(row.get("p_value"), row.get("log10_p"))
    if column == "nearest":
        return row.get("nearest_reference")
    if column == "path":
        return display_path(row.get("path"))
    return row.get(column)


#: Columns the terminal table leaves to the files (JSON and CSV carry them).
_NOT_IN_TABLE = ("derivation", "derived_from", "p_value_text", "nearest_reference", "status")


def results_table(rows: Sequence[dict]) -> str:
    """One aligned row per model: the verdict (in words) and its numbers, the nearest reference, the path,
    a scan's extra columns when present, and the error of a model that failed; under the table, a line for each
    derived mixture of experts saying which of its experts matched which of its base's."""
    columns = [c for c in _columns(rows) if c not in _NOT_IN_TABLE]
    for column in (*SCAN_COLUMNS[:-2], "error"):  # labels no row carries, or no error: a column of dashes
        if column in columns and all(r.get(column) in (None, "") for r in rows):
            columns.remove(column)
    if any("nearest_reference" in r for r in rows):
        columns.insert(columns.index("distance") + 1, "nearest")
    if "error" in columns:
        columns.append(columns.pop(columns.index("error")))  # the longest cell last
    table = format_table(columns, [[_table_cell(c, r) for c in columns] for r in rows])
    return "\n".join([table, *_expert_lines(rows)])


def _expert_lines(rows: Sequence[dict]) -> list[str]:
    """Under the table, for each derived mixture of experts, which of its experts matched which of its base's."""
    from lineage.compare.experts import experts_sentence

    out = []
    for row in rows:
        evidence = row.get("evidence") or {}
        layers = (evidence.get("weight") or {}).get("experts")
        sentence = experts_sentence(layers, evidence.get("reference")) if row.get("verdict") == "derived" else None
        if sentence:
            out.append(f"{row.get('model')}: {sentence}")
    return out


def matrix_table(names: Sequence[str], matrix: np.ndarray) -> str:
    """A distance matrix as an aligned table (models down and across)."""
    m = np.asarray(matrix, dtype=float)
    return format_table(["model", *names], [[n, *m[i].tolist()] for i, n in enumerate(names)])


def format_results(rows: Sequence[dict], fmt: str) -> str:
    """Rows in `fmt` ("table", "json" or "csv")."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return to_csv(results_frame(rows))
    if fmt == "table":
        return results_table(rows)
    raise ValueError(f"unknown format {fmt!r}")


def format_matrix(names: Sequence[str], matrix: np.ndarray, fmt: str, method: str = "") -> str:
    """A distance matrix in `fmt`; JSON is `{"method", "models", "matrix"}`."""
    if fmt == "json":
        return to_json({"method": method, "models": list(names), "matrix": np.asarray(matrix, float).tolist()})
    if fmt == "csv":
        return to_csv(matrix_frame(names, matrix))
    if fmt == "table":
        return matrix_table(names, matrix)
    raise ValueError(f"unknown format {fmt!r}")
