"""One self-contained `report.html`: the pictures embedded as base64 PNG, the tables inline, no external
links, scripts or styles, so the file can be mailed or archived alone and still shows everything.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from lineage.report.tables import SCAN_COLUMNS, VERDICT_COLUMNS

#: Beyond this many rows the page shows the first ones and points at results.csv.
MAX_HTML_ROWS = 5000

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.miss td { background: #fde8e8; }
img { max-width: 100%; border: 1px solid #ddd; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _e(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(header: Sequence[str], body: Sequence[Sequence[object]], classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(
            f'<td class="num">{_e(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_e(v)}</td>" for v in row
        )
        lines.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _accuracy_rows(summary: Mapping) -> list[list[object]]:
    rows = []
    for label, acc in (
        ("family (suspects)", summary.get("family_accuracy")),
        ("family (with bases)", summary.get("family_accuracy_with_bases")),
        ("base (suspects)", summary.get("base_accuracy")),
        ("closed-set family (suspects)", summary.get("closed_set", {}).get("family_accuracy")),
        ("closed-set family (with bases)", summary.get("closed_set", {}).get("family_accuracy_with_bases")),
    ):
        if acc:
            rows.append([label, acc["correct"], acc["total"], acc["rate"]])
    return rows


def _grouped_rows(groups: Mapping) -> list[list[object]]:
    return [
        [
            name,
            g["family"]["correct"],
            g["family"]["total"],
            g["family"]["rate"],
            g["base"]["correct"],
            g["base"]["total"],
            g["base"]["rate"],
        ]
        for name, g in groups.items()
    ]


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(
    path: str | Path,
    summary: Mapping,
    rows: Sequence[dict],
    images: Mapping[str, Path],
    wrong: Sequence[bool] | None = None,
    title: str = "lineage scan",
) -> Path:
    """Write the report page.

    Args:
        path: the HTML file to write.
        summary: the scan summary.
        rows: the scan rows.
        images: caption -> PNG file, embedded in order.
        wrong: per row, whether its verdict is wrong (those rows are shaded).
        title: the page title.

    Returns:
        The path written.
    """
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    columns = [*VERDICT_COLUMNS, *(c for c in SCAN_COLUMNS if c in present)]
    shown = rows[:MAX_HTML_ROWS]
    misses = ["miss" if w else "" for w in (wrong or [False] * len(rows))[: len(shown)]]
    threshold = summary.get("threshold") or {}
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>Method: <code>{_e(summary.get('method'))}</code> — {_e(summary.get('description'))}.<br>",
        f"Manifest: <code>{_e(summary.get('manifest'))}</code>. Models {_e(summary.get('models'))}, references "
        f"{_e(summary.get('references'))}, suspects {_e(summary.get('suspects'))}, failed "
        f"{_e(summary.get('failed'))}.<br>Unknown threshold: {_e(threshold.get('threshold'))} "
        f"({_e(threshold.get('rule'))}: {_e(threshold.get('note'))}).</p>",
        "<h2>Accuracy</h2>",
        _table(["measure", "correct", "total", "rate"], _accuracy_rows(summary)),
    ]
    for key, heading in (("by_derivation", "By derivation"), ("by_role", "By role")):
        if summary.get(key):
            parts += [
                f"<h2>{heading}</h2>",
                _table(
                    [key.removeprefix("by_"), "family ok", "of", "rate", "base ok", "of", "rate"],
                    _grouped_rows(summary[key]),
                ),
            ]
    confusion = summary.get("confusion") or {}
    if confusion.get("labels"):
        labels = confusion["labels"]
        parts += [
            "<h2>Confusion (rows expected, columns predicted)</h2>",
            _table(["", *labels], [[lab, *row] for lab, row in zip(labels, confusion["matrix"])]),
        ]
    outsiders, false_unknowns = summary.get("outsiders") or {}, summary.get("false_unknowns") or {}
    parts.append(
        f"<p>Outsiders flagged: {_e(outsiders.get('flagged'))} of {_e(outsiders.get('total'))}. "
        f"False unknowns: {_e(false_unknowns.get('count'))}.</p>"
    )
    for caption, image in images.items():
        parts += [f"<h2>{html.escape(caption)}</h2>", _image(image, caption)]
    parts.append("<h2>Models</h2>")
    if len(rows) > len(shown):
        parts.append(f"<p>First {len(shown)} of {len(rows)} rows; all of them are in results.csv.</p>")
    parts.append(_table(columns, [[r.get(c) for c in columns] for r in shown], misses))
    parts.append("</body></html>\n")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path
