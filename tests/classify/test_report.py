"""Report files: tables, CSV/Parquet/JSON, PNGs and one self-contained HTML page."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lineage.jobs.scan import ScanOptions, scan
from lineage.report.plots import classical_mds, embed_2d
from lineage.report.tables import format_matrix, format_results, results_frame
from lineage.report.writers import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> tuple[Path, object]:
    result = scan(options=ScanOptions(method="tensorguard", use_cache=False))
    out = tmp_path_factory.mktemp("report")
    write_report(result, out)
    return out, result


def test_report_folder_has_every_file(demo_report):
    out, _ = demo_report
    expected = {
        "results.csv", "results.parquet", "results.json", "distances.csv", "distances.parquet",
        "summary.json", "map.png", "heatmap.png", "report.html",
    }  # fmt: skip
    assert expected <= {p.name for p in out.iterdir()}
    assert (out / "map.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "heatmap.png").read_bytes()[:8] == PNG_MAGIC


def test_results_and_distances_tables(demo_report):
    out, result = demo_report
    frame = pl.read_parquet(out / "results.parquet")
    assert frame.height == 58
    assert frame.columns[:6] == ["model", "verdict", "family", "derived_from", "p_value", "distance"]
    assert frame.schema["p_value"] == pl.Float64 and frame.schema["distance"] == pl.Float64
    assert "dist:phi-4" in frame.columns and "true_family" in frame.columns
    assert pl.read_csv(out / "results.csv").columns == frame.columns
    distances = pl.read_parquet(out / "distances.parquet")
    assert distances.shape == (58, 59) and distances.columns[0] == "model"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["closed_set"]["family_accuracy"] == result.summary["closed_set"]["family_accuracy"]
    closed = sum(r["cluster_family"] == r["true_family"] for r in result.rows if r["role"] != "base")
    assert summary["closed_set"]["family_accuracy"]["correct"] == closed


def test_html_is_self_contained(demo_report):
    out, _ = demo_report
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "SicariusSicariiStuff_Phi-lthy4" in page and "Confusion" in page


def test_text_formats_carry_the_same_columns():
    rows = [
        {"model": "m", "verdict": "derived", "family": "a", "derived_from": "b", "p_value": 1.5e-12,
         "distance": 0.5, "distances": {"b": 0.5}},
        {"model": "r", "verdict": "related", "family": "a", "derived_from": None, "p_value": 0.25,
         "distance": 0.75, "distances": {"b": 0.75}},
        {"model": "n", "verdict": "unknown", "family": "unknown", "derived_from": None, "p_value": None,
         "distance": 2.0, "distances": {"b": 2.0}},
    ]  # fmt: skip
    table = format_results(rows, "table").splitlines()
    assert table[0].split() == ["model", "verdict", "family", "p_value", "distance"]
    # The verdict in words; p-values in scientific notation (they span many orders of magnitude).
    assert table[2].split() == ["m", "derived", "from", "b", "a", "1.5e-12", "0.5000"]
    assert table[3].split() == ["r", "related", "to", "a", "a", "2.5e-01", "0.7500"]
    assert table[4].split() == ["n", "unknown", "unknown", "-", "2.0000"]
    header = "model,verdict,family,derived_from,p_value,distance,dist:b"
    assert format_results(rows, "csv").splitlines()[0] == header
    assert format_results(rows, "csv").splitlines()[1] == "m,derived,a,b,1.5e-12,0.5,0.5"
    assert json.loads(format_results(rows, "json")) == rows
    assert results_frame(rows).schema["distance"] == pl.Float64
    assert results_frame(rows).schema["p_value"] == pl.Float64
    matrix = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert json.loads(format_matrix(["x", "y"], matrix, "json", "lineage"))["matrix"] == matrix.tolist()
    assert format_matrix(["x", "y"], matrix, "csv").splitlines()[0] == "model,dist:x,dist:y"
    assert format_matrix(["model", "y"], matrix, "csv").splitlines()[1].startswith("model,0.0,1.0")
    with pytest.raises(ValueError):
        format_results(rows, "xml")


def test_json_has_no_nan_or_infinity():
    rows = [
        {"model": "m", "verdict": "unknown", "family": "unknown", "distance": float("inf"), "p_value": float("nan")}
    ]
    doc = json.loads(format_results(rows, "json"))[0]
    assert doc["distance"] is None and doc["p_value"] is None


def test_classical_mds_recovers_a_planar_layout():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(12, 2))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coords, used = embed_2d(d)
    assert used == "pca"
    assert np.allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), d, atol=1e-8)
    assert classical_mds(np.zeros((0, 0))).shape == (0, 2)


def test_many_models_are_mapped_with_umap_on_the_distances(monkeypatch):
    # A stand-in umap module: the real one compiles for ~30 s (covered by the slow test below).
    seen = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def fit_transform(self, d):
            seen["shape"] = d.shape
            return np.zeros((len(d), 2))

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    coords, used = embed_2d(np.ones((150, 150)) - np.eye(150))
    assert used == "umap" and coords.shape == (150, 2)
    assert seen["metric"] == "precomputed" and seen["shape"] == (150, 150) and seen["n_neighbors"] == 15


@pytest.mark.slow
def test_umap_map_for_many_models(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("real UMAP compiles for ~30 s: run with -m slow")
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.1, size=(60, 3)) for c in (0.0, 5.0)])
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coords, used = embed_2d(d)
    assert used == "umap" and coords.shape == (120, 2) and np.all(np.isfinite(coords))
