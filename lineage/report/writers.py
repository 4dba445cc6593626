"""Report folders: results and distances as CSV and Parquet (polars), the summary as JSON, two PNGs and
`report.html`. Files are written whole, then the page that shows them, so a half-written folder never
has a page pointing at missing pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lineage.report.summary import expected_family
from lineage.report.tables import matrix_frame, results_frame, to_json

if TYPE_CHECKING:
    from lineage.jobs.scan import ScanResult

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

    by_name = {r["model"]: r for r in result.rows}
    ref_names = set(result.reference_names)
    ref_families = {r.family for r in result.manifest.references}
    wrong = [_is_wrong(r, ref_families) for r in result.rows]
    shown = [by_name[n] for n in names]
    families = [r["true_family"] for r in shown]
    written.append(
        plot_map(
            coords,
            names,
            families,
            [n in ref_names for n in names],
            out / MAP_PNG,
            wrong=[_is_wrong(r, ref_families) for r in shown],
            title=f"{result.method}: models by family ({used.upper()} of the distance matrix; stars: bases)",
        )
    )
    written.append(plot_heatmap(matrix, names, families, out / HEATMAP_PNG))
    images = {"Map of all models": out / MAP_PNG, "Distance heat-map": out / HEATMAP_PNG}
    written.append(write_html(out / REPORT_HTML, summary, result.rows, images, wrong=wrong))
    return written


def _is_wrong(row: dict, reference_families: set[str]) -> bool:
    return row.get("error") is not None or row.get("family") != expected_family(row, reference_families)
