"""Report folders: results and distances as CSV and Parquet (polars), the summary as JSON, two PNGs and
`report.html`. Files are written whole, then the page that shows them, so a half-written folder never
has a page pointing at missing pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lineage.report.summary import expected_family, is_labelled
from lineage.report.tables import matrix_frame, results_frame, to_json


class ScanResult(Protocol):
    """What a report reads of a scan (`lineage.jobs.scan.ScanResult`, which the job stage makes): the report
    stage renders it and never imports the job that made it."""

    method: str
    manifest: Any  # `lineage.refs.manifest.Manifest`: its references' families
    run: Any  # `lineage.decide.kmeans.ClassificationRun`: the references' own verdicts
    rows: list[dict]
    summary: dict
    shown: list  # the outcomes of `rows`, in order
    reference_outcomes: list

    @property
    def mapped(self) -> list:
        """The outcomes with a fingerprint, in the order of `distance_matrix`."""

    def distance_matrix(self) -> tuple[list[str], np.ndarray]:
        """Names and the pairwise distance matrix of every fingerprinted model."""

RESULTS, DISTANCES, SUMMARY = "results", "distances", "summary.json"
MAP_PNG, HEATMAP_PNG, REPORT_HTML = "map.png", "heatmap.png", "report.html"


def write_results(rows: Sequence[dict], out_dir: str | Path, stem: str = RESULTS) -> list[Path]:
    """Write `<stem>.csv`, `<stem>.parquet` and `<stem>.json` (the JSON keeps `distances` as a dict).

    Args:
        rows: classify or scan objects.
        out_dir: the folder (created).
        stem: file name stem.

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = results_frame(rows)
    frame.write_csv(out / f"{stem}.csv")
    frame.write_parquet(out / f"{stem}.parquet")
    (out / f"{stem}.json").write_text(to_json(list(rows)) + "\n", encoding="utf-8")
    return [out / f"{stem}.csv", out / f"{stem}.parquet", out / f"{stem}.json"]


def write_matrix(names: Sequence[str], matrix: np.ndarray, out_dir: str | Path, stem: str = DISTANCES) -> list[Path]:
    """Write a square distance matrix as `<stem>.csv` and `<stem>.parquet` (a `model` column first)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = matrix_frame(names, matrix)
    frame.write_csv(out / f"{stem}.csv")
    frame.write_parquet(out / f"{stem}.parquet")
    return [out / f"{stem}.csv", out / f"{stem}.parquet"]


def write_report(result: ScanResult, out_dir: str | Path, map_how: str = "auto") -> list[Path]:
    """Write a scan's report folder.

    Args:
        result: the scan.
        out_dir: the folder (created).
        map_how: the 2-D map's embedding: "auto", "pca" or "umap" (see `lineage.report.plots`).

    Returns:
        The files written: results.{csv,parquet,json}, distances.{csv,parquet}, summary.json, map.png,
        heatmap.png, report.html.
    """
    from lineage.report.html import write_html
    from lineage.report.plots import embed_2d, plot_heatmap, plot_map

    out = Path(out_dir)
    written = write_results(result.rows, out)
    names, matrix = result.distance_matrix()
    written += write_matrix(names, matrix, out)
    coords, used = embed_2d(matrix, how=map_how)
    summary = {**result.summary, "map": used}
    (out / SUMMARY).write_text(to_json(summary) + "\n", encoding="utf-8")
    written.append(out / SUMMARY)

    ref_families = {r.family or r.name for r in result.manifest.references} | set(_reference_families(result))
    wrong = [is_wrong(r, ref_families) for r in result.rows]
    points = _points(result)
    by_label = all(p["labelled"] for p in points if not p["reference"])
    families = [p["true_family"] if by_label else p["family"] for p in points]
    written.append(
        plot_map(
            coords,
            names,
            families,
            [p["reference"] for p in points],
            out / MAP_PNG,
            wrong=[p["wrong"] for p in points] if by_label else None,
            title=f"{result.method}: every model, {used.upper()} of the distance matrix (stars: references)",
            legend=f"family ({'label' if by_label else 'verdict'})",
        )
    )
    written.append(plot_heatmap(matrix, names, families, out / HEATMAP_PNG))
    images = {"Distances between all models": out / HEATMAP_PNG, "Map of all models": out / MAP_PNG}
    written.append(write_html(out / REPORT_HTML, summary, result.rows, images, wrong=wrong))
    return written


def _reference_families(result: ScanResult) -> list[str]:
    return [str(v.family) for v in result.run.reference_results if v.family]


def _points(result: ScanResult) -> list[dict]:
    """Per model of the distance matrix: is it a reference, its labelled and found family, is it wrong."""
    refs = {id(o) for o in result.reference_outcomes}
    rows = {id(o): r for o, r in zip(result.shown, result.rows)}
    ref_families = {r.family or r.name for r in result.manifest.references}
    out = []
    for o in result.mapped:
        row, key, reference = rows.get(id(o)), o.key, id(o) in refs
        family = (row or {}).get("family") or getattr(key, "family", None) or getattr(key, "name", None)
        true_family = (row or {}).get("true_family") or getattr(key, "family", None) or family
        labelled = row is None or is_labelled(row)
        out.append({"reference": reference, "family": family, "true_family": true_family, "labelled": labelled,
                    "wrong": row is not None and is_wrong(row, ref_families)})  # fmt: skip
    return out


def is_wrong(row: dict, reference_families: set[str]) -> bool:
    """Whether a labelled row's family is not the one its labels expect (failed and unlabelled rows: no)."""
    if row.get("error") is not None or not is_labelled(row):
        return False
    expected = expected_family(row, reference_families)
    return expected is not None and row.get("family") != expected
