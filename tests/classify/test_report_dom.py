"""Issue 17, finding 7: report.html read as a reviewer reads it, from its DOM (no browser needed): the verdicts
table first (model, verdict, p-value in scientific notation, nearest reference, distance, path), then the
heat-map, the map with every model labelled, and the scores only when there are labels; the demo scan says
why its family-only verdicts are no alarm."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lineage.jobs.scan import ScanOptions, scan
from lineage.report.html import write_html
from lineage.report.summary import summary_text
from lineage.report.writers import write_report


class _Page(HTMLParser):
    """The page's outline: headings and images in order, and every table's id, headers and cells."""

    def __init__(self) -> None:
        super().__init__()
        self.outline: list[str] = []
        self.tables: list[dict] = []
        self._text: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append({"id": dict(attrs).get("id"), "head": [], "rows": []})
            self.outline.append(f"table#{dict(attrs).get('id')}")
        elif tag == "img":
            self.outline.append("img")
        elif tag == "tr":
            self._row = []
        elif tag in ("h2", "th", "td"):
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "th", "td") and self._text is not None:
            text, self._text = "".join(self._text).strip(), None
            if tag == "h2":
                self.outline.append(text)
            elif self._row is not None:
                self._row.append(text)
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if table["head"]:
                table["rows"].append(self._row)
            else:
                table["head"] = self._row  # the first row of a table: its header cells
            self._row = None


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    result = scan(options=ScanOptions(method="tensorguard", unknown="off", use_cache=False))
    out = tmp_path_factory.mktemp("report_dom")
    write_report(result, out)
    return out, result


def test_the_verdicts_table_comes_first_with_every_model(demo) -> None:
    out, result = demo
    page = parse(out / "report.html")
    first = page.tables[0]
    assert first["id"] == "verdicts"
    assert first["head"] == ["model", "verdict", "p-value", "nearest reference", "distance", "path"]
    assert [row[0] for row in first["rows"]] == [r["model"] for r in result.rows]
    assert all(row[1].startswith(("related to", "unknown", "derived from")) for row in first["rows"])
    assert all(row[5].endswith("_features.json") for row in first["rows"])  # the path of each model


def test_the_page_reads_verdicts_then_evidence_then_scores(demo) -> None:
    out, _ = demo
    outline = parse(out / "report.html").outline
    order = [outline.index(x) for x in ("Verdicts", "table#verdicts", "Distances between all models",
                                         "Map of all models", "Scores against the labels")]  # fmt: skip
    assert order == sorted(order)
    assert outline.count("img") == 2 and outline.index("img") < outline.index("Scores against the labels")


def test_p_values_are_in_scientific_notation_and_never_zero(tmp_path: Path) -> None:
    rows = [
        {"model": "ft", "verdict": "derived", "derived_from": "b", "family": "f", "p_value": 1.23e-56,
         "nearest_reference": "b", "distance": 0.1, "path": "/m/ft", "error": None},
        {"model": "deep", "verdict": "derived", "derived_from": "b", "family": "f", "p_value": 0.0,
         "nearest_reference": "b", "distance": 0.0, "path": "/m/deep", "error": None},
        {"model": "far", "verdict": "unknown", "derived_from": None, "family": "unknown", "p_value": 0.31,
         "nearest_reference": "b", "distance": 0.98, "path": "/m/far", "error": None},
        {"model": "bad", "verdict": None, "family": None, "p_value": None, "path": "/m/bad", "error": "truncated"},
    ]  # fmt: skip
    page = parse(write_html(tmp_path / "r.html", {"labelled": 0}, rows, {}))
    cells = {row[0]: row for row in page.tables[0]["rows"]}
    assert [cells[m][2] for m in ("ft", "deep", "far")] == ["1.2e-56", "< 1e-300", "3.1e-01"]
    assert cells["bad"][1] == "error: truncated"
    assert "nothing is scored" in (tmp_path / "r.html").read_text() and len(page.tables) == 1  # no labels


def test_every_point_of_the_map_is_labelled() -> None:
    from lineage.report.plots import point_labels

    coords = np.array([[0.0, 0.0], [0.0, 0.0001], [1.0, 1.0], [0.5, 0.2]])
    names, bases = ["base", "ft", "other", "x"], [True, False, True, False]
    labels = point_labels(coords, names, bases)
    assert sorted(n for _, text in labels for n in text.split("\n")) == sorted(names)
    assert labels[0][1] == "base\nft"  # one place, one label, the reference first


def test_the_demo_says_why_its_verdicts_are_no_alarm(demo) -> None:
    _, result = demo
    text = summary_text(result.summary)
    assert "base accuracy" not in text and "0/50" not in text
    assert "no derivation test ran" in text and "not a finding about those models" in text
    assert "Qwen2.5-3B" in text  # the reference the paper's K-Means puts in another family's cluster, named
