"""One self-contained `report.html` a reviewer reads top-down: what was found first, the evidence next, the
scores last, and only when there are labels to score against.

Order: a short header (what was scanned, against which references, at which levels, and any note a
reader needs, such as "no derivation test ran"); the verdicts table (model, verdict, p-value in scientific
notation, nearest reference, distance, path; failed models with their error), which is the answer; the
distance heat-map and the 2-D map (every point labelled), which show why; then the scores, only for rows
that carry labels. Pictures are embedded as base64 PNG and the tables inline, with no external links,
scripts or styles, so the file can be mailed or archived alone and still shows everything.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lineage.report.numbers import format_distance, format_p
from lineage.report.tables import display_path, verdict_words

#: Beyond this many rows the page shows the first ones and points at results.csv.
MAX_HTML_ROWS = 5000
#: The verdicts table's columns (the first table of the page; a test reads it from the DOM).
VERDICT_HEADERS: tuple[str, ...] = ("model", "verdict", "p-value", "nearest reference", "distance", "path")
#: The tree section's tables (`tree_section`).
EDGE_HEADERS = ("parent", "child", "relation", "direction", "p-value", "distance", "evidence")
NODE_HEADERS = ("model", "parents", "relation", "roots", "declared base_model", "declared check", "license",
                "inherited license")  # fmt: skip
LABEL_HEADERS: tuple[str, ...] = ("model", "verdict", "true family", "true base", "role", "derivation", "cluster")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 110em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
#verdicts td { white-space: nowrap; }
#verdicts tr.error td { white-space: normal; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path { font-family: ui-monospace, monospace; font-size: 0.9em; color: #555; }
tr.miss td { background: #fde8e8; }
tr.error td { background: #fff4d6; }
.derived { font-weight: 600; color: #a40000; }
.note { background: #eef4ff; border-left: 4px solid #4a7bd0; padding: 0.5em 1em; }
img { max-width: 100%; border: 1px solid #ddd; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _e(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(
    header: Sequence[str],
    body: Sequence[Sequence[object]],
    classes: Sequence[str] | None = None,
    table_id: str | None = None,
    cell_classes: Sequence[str] | None = None,
) -> str:
    """A table; numbers right-aligned, `cell_classes` per column (a CSS class, or "")."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = []
        for j, v in enumerate(row):
            own = (cell_classes[j] if cell_classes else "") or ("num" if isinstance(v, (int, float)) else "")
            cells.append(f'<td class="{own}">{_e(v)}</td>' if own else f"<td>{_e(v)}</td>")
        lines.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def verdict_cells(row: dict, root: Path | None = None) -> list[object]:
    """One row of the verdicts table: model, verdict in words (the error for a failed model), p-value in
    scientific notation (never 0), nearest reference, distance, path (relative to `root` when under it)."""
    path = _shown_path(row.get("path"), root)
    if row.get("error") is not None:
        return [row.get("model"), f"error: {row['error']}", "–", "–", "–", path]
    p = row.get("p_value")
    return [
        row.get("model"),
        verdict_words(row),
        format_p(p, row.get("log10_p")) if p is not None else "no test",
        row.get("nearest_reference"),
        format_distance(row.get("distance")),
        path,
    ]


def common_root(paths: Sequence[str | None]) -> Path | None:
    """The deepest folder holding every local path (None when there is none worth stripping)."""
    local = [Path(p) for p in paths if p and not str(p).startswith("hf:/") and Path(p).is_absolute()]
    if not local:
        return None
    root = Path(os.path.commonpath([str(p.parent) for p in local]))
    return root if len(root.parts) > 1 else None


def _shown_path(path: str | None, root: Path | None) -> str | None:
    if path is None or root is None or str(path).startswith("hf:/"):
        return display_path(path)
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _header(summary: Mapping, title: str) -> list[str]:
    """What was scanned, against what, at which levels; the notes a reader must not miss."""
    threshold = summary.get("threshold") or {}
    source = summary.get("manifest") or "the models given"
    refs = summary.get("references_from") or "the manifest's role=base rows"
    counts = summary.get("verdict_counts") or {}
    found = ", ".join(f"{k} {v}" for k, v in counts.items() if v or k != "error")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Scanned: <code>{_e(source)}</code>, against {_e(refs)}. Method <code>{_e(summary.get('method'))}"
        f"</code>: {_e(summary.get('description'))}.<br>Suspects {_e(summary.get('suspects'))} "
        f"({_e(found)}); references {_e(summary.get('references'))}; failed {_e(summary.get('failed'))}.<br>",
        f"Level: {_e((summary.get('level') or {}).get('text'))}.<br>",
        f"Related/unknown threshold: {_e(threshold.get('threshold'))} ({_e(threshold.get('rule'))}: "
        f"{_e(threshold.get('note'))}).</p>",
    ]
    parts += [f'<p class="note">{_e(note)}</p>' for note in summary.get("notes") or ()]
    return parts


def _verdicts(rows: Sequence[dict], wrong: Sequence[bool] | None) -> list[str]:
    shown = rows[:MAX_HTML_ROWS]
    flags = list(wrong or [False] * len(rows))[: len(shown)]
    classes = ["error" if r.get("error") is not None else ("miss" if w else "") for r, w in zip(shown, flags)]
    root = common_root([r.get("path") for r in rows])
    parts = ["<h2>Verdicts</h2>"]
    if root is not None:
        parts.append(f"<p>Paths are relative to <code>{_e(root)}</code>.</p>")
    if len(rows) > len(shown):
        parts.append(f"<p>First {len(shown)} of {len(rows)} rows; all of them are in results.csv.</p>")
    cells = ("", "", "num", "", "num", "path")
    parts.append(_table(VERDICT_HEADERS, [verdict_cells(r, root) for r in shown], classes, "verdicts", cells))
    return parts


def _accuracy_rows(summary: Mapping) -> list[list[object]]:
    rows = []
    for label, acc in (
        ("family (suspects)", summary.get("family_accuracy")),
        ("family (with bases)", summary.get("family_accuracy_with_bases")),
        ("base (suspects)", summary.get("base_accuracy")),
        ("closed-set family (suspects)", summary.get("closed_set", {}).get("family_accuracy")),
        ("closed-set family (with bases)", summary.get("closed_set", {}).get("family_accuracy_with_bases")),
        ("verdict (suspects)", (summary.get("verdicts") or {}).get("verdict_accuracy")),
    ):
        if acc and acc.get("total"):
            rows.append([label, acc["correct"], acc["total"], acc["rate"]])
    return rows


def _grouped_rows(groups: Mapping) -> list[list[object]]:
    return [
        [name, g["family"]["correct"], g["family"]["total"], g["family"]["rate"],
         g["base"]["correct"], g["base"]["total"], g["base"]["rate"]]
        for name, g in groups.items()
    ]  # fmt: skip


def _scores(summary: Mapping, rows: Sequence[dict]) -> list[str]:
    """The scoring section: only when some suspect carries labels, and only over those."""
    parts = ["<h2>Scores against the labels</h2>"]
    if not summary.get("labelled"):
        return [*parts, "<p>None: no suspect carries a label (family, base or role), so nothing is scored.</p>"]
    parts.append(
        f"<p>Over the {_e(summary.get('labelled'))} labelled suspect(s); {_e(summary.get('unlabelled'))} "
        f"unlabelled and {_e(summary.get('failed'))} failed are not scored.</p>"
    )
    parts.append(_table(["measure", "correct", "total", "rate"], _accuracy_rows(summary)))
    for key, heading in (("by_derivation", "By derivation"), ("by_role", "By role")):
        if summary.get(key):
            header = [key.removeprefix("by_"), "family ok", "of", "rate", "base ok", "of", "rate"]
            parts += [f"<h3>{heading}</h3>", _table(header, _grouped_rows(summary[key]))]
    confusion = summary.get("confusion") or {}
    if confusion.get("labels"):
        labels = confusion["labels"]
        parts += [
            "<h3>Confusion (rows expected, columns predicted)</h3>",
            _table(["", *labels], [[lab, *row] for lab, row in zip(labels, confusion["matrix"])]),
        ]
    outsiders, false_unknowns = summary.get("outsiders") or {}, summary.get("false_unknowns") or {}
    parts.append(
        f"<p>Outsiders flagged: {_e(outsiders.get('flagged'))} of {_e(outsiders.get('total'))}. "
        f"False unknowns: {_e(false_unknowns.get('count'))}.</p>"
    )
    labelled = [r for r in rows[:MAX_HTML_ROWS] if r.get("true_family") is not None or r.get("true_base")]
    body = [[r.get("model"), verdict_words(r), r.get("true_family"), r.get("true_base"), r.get("role"),
             r.get("derivation"), r.get("cluster_family")] for r in labelled]  # fmt: skip
    return [*parts, "<h3>Labels</h3>", _table(LABEL_HEADERS, body)]


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
        images: caption -> PNG file, embedded in order after the verdicts (the heat-map, then the map).
        wrong: per row, whether its verdict is wrong against its labels (those rows are shaded).
        title: the page title.

    Returns:
        The path written.
    """
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        *_header(summary, title),
        *_verdicts(rows, wrong),
    ]
    for caption, image in images.items():
        parts += [f"<h2>{html.escape(caption)}</h2>", _image(image, caption)]
    parts += _scores(summary, rows)
    parts.append("</body></html>\n")
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path


def tree_section(doc: Mapping, image: Path | None) -> list[str]:
    """The tree as a section of a report page: the drawing, the edges, the models' checks."""
    s = doc["summary"]
    parts = [
        "<h2 id='tree'>Model tree</h2>",
        f"<p>{_e(s.get('fingerprinted'))} models, {_e(s.get('edges'))} edges, {_e(s.get('roots'))} roots; "
        f"{_e(s.get('tested'))} weight tests on {_e(s.get('candidates'))} candidate pairs, Benjamini-Hochberg at "
        f"{_e(s.get('alpha'))}; {_e(s.get('undirected'))} undirected edges.</p>",
    ]
    if s.get("license_conflicts"):
        conflicts = ", ".join(s["license_conflicts"])
        parts.append(f"<p class='note'>Licence differs from the inherited one: {_e(conflicts)}</p>")
    if s.get("declared_contradicted"):
        parts.append(f"<p class='note'>Declared base_model contradicted by the weights: "
                     f"{_e(', '.join(s['declared_contradicted']))}</p>")  # fmt: skip
    if image is not None:
        parts.append(_image(image, "model tree"))
    body = [[e["parent"], e["child"], e["relation"], f"{e['direction']} ({e['direction_confidence']:.2f})",
             f"{e['p_value']:.1e}" if e["p_value"] > 0 else f"1e{e['log10_p']:.0f}", e["distance"],
             f"{e['relation_evidence']}; " + "; ".join(e["direction_evidence"])] for e in doc["edges"]]  # fmt: skip
    parts += ["<h3>Edges</h3>", _table(EDGE_HEADERS, body, table_id="tree-edges")]
    nodes = [n for n in doc["nodes"] if n["status"] == "ok"]
    body = [[n["name"], ", ".join(n["parents"]) or None, n["relation"], ", ".join(n["roots"]),
             ", ".join(d or "(not in the tree)" for d in n["declared_base_model"]) or None, n["declared_check"],
             n["license"], ", ".join(n["inherited_license"] or []) or None] for n in nodes]  # fmt: skip
    classes = ["miss" if n["license_conflict"] or n["declared_check"] == "contradicted" else "" for n in nodes]
    parts += ["<h3>Models</h3>", _table(NODE_HEADERS, body, classes=classes, table_id="tree-models")]
    failed = [n for n in doc["nodes"] if n["status"] != "ok"]
    if failed:
        parts += ["<h3>Failed</h3>", _table(("model", "error"), [[n["name"], n["error"]] for n in failed])]
    return parts


def write_tree_html(path: str | Path, doc: Mapping, image: Path | None) -> Path:
    """Write the page of `lineage tree`: a title and the tree section (`tree_section`) of a `tree.json` doc."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lineage tree</title>",
        f"<style>{_STYLE}</style></head><body><h1>lineage tree</h1>",
        *tree_section(doc, image),
        "</body></html>\n",
    ]
    path = Path(path)
    path.write_text("".join(parts), encoding="utf-8")
    return path
