"""scan, manifests and the fingerprint cache: failures are rows, a second scan fingerprints nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lineage.data import DEMO_MANIFEST
from lineage.errors import ClassificationError, LineageWarning, ManifestError
from lineage.fingerprint import load_fingerprint
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.inputs import expand_inputs
from lineage.fingerprint.obtain import CACHED, FINGERPRINTED, LOADED, obtain_fingerprint
from lineage.jobs.scan import ScanOptions, classify_paths, distance_paths, scan
from lineage.refs.manifest import read_manifest
from lineage.refs.open import open_references

from .synth import features, write_feature_json, write_manifest

# --- manifests ---------------------------------------------------------------------------------------


def test_manifest_paths_are_relative_to_the_csv(tmp_path: Path):
    sub = tmp_path / "cat"
    sub.mkdir()
    path = write_manifest(
        sub / "m.csv",
        [{"name": "a", "path": "models/a", "family": "x", "role": "base", "parents": "p; q|r"}],
        ("name", "path", "family", "base", "role", "parents"),
    )
    row = read_manifest(path).rows[0]
    assert row.path == (sub / "models" / "a").resolve()
    assert row.parents == ("p", "q", "r") and row.base is None


def test_manifest_without_role_makes_every_row_a_reference(tmp_path: Path):
    path = write_manifest(tmp_path / "m.csv", [{"name": "a", "path": "a", "family": "x"}], ("name", "path", "family"))
    manifest = read_manifest(path)
    assert manifest.references == manifest.rows and manifest.suspects == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,family\na,b\n", "no 'path' column"),
        ("name,path,family,role\na,b,x,base\na,c,y,base\n", "duplicate name 'a'"),
        ("name,path,family,role\na,,x,base\n", "line 2: empty 'path'"),
        ("name,path,family,role\na,b,x,derivative\n", "role=base"),
        ("name,path,family\n", "no rows"),
    ],
)
def test_manifest_errors_say_what_and_where(tmp_path: Path, text: str, message: str):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_manifest_missing_or_folder(tmp_path: Path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "none.csv")
    with pytest.raises(ManifestError, match="is a folder"):
        open_references(tmp_path)


def test_manifest_with_bom_and_blank_lines(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffname,path,family,role\n\na,a.json,x,base\n".encode())
    assert [r.name for r in read_manifest(path).rows] == ["a"]


# --- scan ----------------------------------------------------------------------------------------------


def test_scan_records_failures_as_rows_and_goes_on(small_catalog: Path):
    calls = []
    result = scan(
        small_catalog, ScanOptions(method="tensorguard", use_cache=False), progress=lambda *a: calls.append(a)
    )
    assert [c[0] for c in calls] == list(range(1, 13)) and calls[-1][1] == 12
    rows = {r["model"]: r for r in result.rows}
    assert set(result.failed) == {"ghost", "broken"}
    assert "no such file" in rows["ghost"]["error"] and rows["ghost"]["family"] is None
    assert "not a readable JSON" in rows["broken"]["error"]
    s = result.summary
    assert (s["models"], s["references"], s["suspects"], s["failed"], s["loaded"]) == (12, 3, 9, 2, 10)
    assert set(s["errors"]) == {"ghost", "broken"}
    assert rows["ghost"]["status"] == "error" and rows["llama-finetune"]["status"] == "ok"
    # The six derivatives are right; failures are counted apart; the outsider is scored as 'unknown'.
    ft = rows["llama-finetune"]
    assert ft["family"] == "llama" and ft["nearest"][0]["reference"] == "llama-base"
    # Feature files carry no weights: the verdict is `related` (no derivation test), never `derived`.
    assert (ft["verdict"], ft["derived_from"], ft["base"], ft["p_value"]) == ("related", None, None, None)
    assert s["verdicts"]["false_derived"]["count"] == 0
    # Every labelled derivative that was read is a missed derivation, said so; the two that failed are not.
    assert sorted(s["verdicts"]["missed_derived"]["models"]) == sorted(
        [f"{f}-{k}" for f in ("llama", "qwen", "phi") for k in ("finetune", "merge")]
    )
    assert s["family_accuracy"]["total"] == 7
    assert s["outsiders"]["total"] == 1
    assert set(s["by_derivation"]) == {"finetune", "merge", "unspecified"}
    assert set(s["by_role"]) == {"base", "derivative", "outsider"}
    assert "error" not in s["confusion"]["labels"]
    assert sum(map(sum, s["confusion"]["matrix"])) == 7


def test_scan_without_usable_references_stops(tmp_path: Path):
    path = write_manifest(tmp_path / "m.csv", [{"name": "a", "path": "missing.json", "family": "x", "role": "base"}])
    with pytest.raises(ClassificationError, match="no reference"):
        scan(path, ScanOptions(use_cache=False))


def test_scan_of_the_demo_and_its_distance_matrix():
    result = scan(options=ScanOptions(method="lineage", use_cache=False))
    assert result.summary["seconds"] > 0.0 and result.summary["models"] == 58  # speed: a bench/ script, not here
    names, matrix = result.distance_matrix()
    assert matrix.shape == (58, 58) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 0)


def test_classify_and_distance_paths(tmp_path: Path):
    folder = DEMO_MANIFEST.parent
    files = [folder / "zephyr-7b-beta_features.json", folder / "phi-4_features.json"]
    result = classify_paths([*files, tmp_path / "missing"], DEMO_MANIFEST, ScanOptions(method="tensorguard"))
    assert [r.model for r in result.results] == ["zephyr-7b-beta", "phi-4"]
    assert len(result.failures) == 1 and "no such file" in result.failures[0].error
    names, matrix, failures = distance_paths([files[1], files[1], files[0]], ScanOptions(method="lineage"))
    assert names == ["phi-4", "phi-4#2", "zephyr-7b-beta"] and matrix[0, 1] == 0.0 and not failures


def test_expand_inputs_accepts_a_folder_of_fingerprint_files(tmp_path: Path):
    rng = np.random.default_rng(0)
    write_feature_json(tmp_path, "a", features(rng))
    write_feature_json(tmp_path, "b", features(rng))
    found = expand_inputs([tmp_path, tmp_path / "a_features.json", tmp_path / "nothing"])
    assert [p.name for p, e in found[:3]] == ["a_features.json", "b_features.json", "a_features.json"]
    assert found[3][1] is not None


# --- cache ---------------------------------------------------------------------------------------------


def test_cache_roundtrip_and_corrupt_entries(tmp_path: Path):
    fp = load_fingerprint(DEMO_MANIFEST.parent / "phi-4_features.json")
    cache = FingerprintCache(tmp_path)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, fp)
    assert cache.get("ab" * 32).tensorguard == fp.tensorguard and len(cache) == 1
    cache.path_for("ab" * 32).write_bytes(b"garbage")
    with pytest.warns(LineageWarning, match="cache entry damaged"):
        assert cache.get("ab" * 32) is None
    with pytest.raises(ValueError):
        cache.path_for("../x")


def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LINEAGE_CACHE", str(tmp_path))
    assert FingerprintCache().folder == tmp_path


def test_second_scan_fingerprints_nothing(tmp_path: Path, monkeypatch):
    import lineage.fingerprint.pipeline as pipeline

    rng = np.random.default_rng(0)
    computed: list[str] = []
    centres = {"a": rng.normal(0, 10, 15), "b": rng.normal(0, 10, 15)}

    def fake_fingerprint(path, options=None, progress=None):  # noqa: ANN001, ANN202
        from lineage.fingerprint import Fingerprint

        computed.append(Path(path).name)
        return Fingerprint(name=Path(path).name, tensorguard=features(rng, centres[Path(path).name[0]], 0.1))

    monkeypatch.setattr(pipeline, "fingerprint_model", fake_fingerprint)
    monkeypatch.setattr(
        pipeline, "model_identity", lambda path, options, **_: (json.dumps(str(path)).encode().hex()[-40:], None)
    )
    rows = []
    for name, role in (("a0", "base"), ("b0", "base"), ("a1", "derivative"), ("b1", "derivative")):
        (tmp_path / name).mkdir()
        rows.append({"name": name, "path": name, "family": name[0], "role": role})
    write_feature_json(tmp_path, "a2", features(rng, centres["a"], 0.1))
    rows.append({"name": "a2", "path": "a2_features.json", "family": "a", "role": "derivative"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    options = ScanOptions(method="tensorguard", cache_dir=tmp_path / "cache", device="cpu")

    first = scan(manifest, options)
    assert sorted(computed) == ["a0", "a1", "b0", "b1"]
    assert [o.how for o in first.outcomes] == [FINGERPRINTED] * 4 + [LOADED]
    second = scan(manifest, options)
    assert sorted(computed) == ["a0", "a1", "b0", "b1"]  # nothing fingerprinted again
    assert (second.summary["fingerprinted"], second.summary["cached"], second.summary["loaded"]) == (0, 4, 1)
    assert second.rows == first.rows
    scan(manifest, ScanOptions(method="tensorguard", use_cache=False))
    assert len(computed) == 8


def test_obtain_names_a_cached_fingerprint_after_its_row(tmp_path: Path):
    fp, how = obtain_fingerprint(DEMO_MANIFEST.parent / "phi-4_features.json", name="renamed")
    assert (fp.name, how) == ("renamed", LOADED)
    assert CACHED == "cached"


# --- issue 25: roles from the known set, a model given twice is one row --------------------------------


@pytest.mark.parametrize("role", ["bse", "reference", "base model"])
def test_an_unknown_role_is_refused_naming_the_manifest_and_row(tmp_path: Path, role: str):
    path = tmp_path / "m.csv"
    path.write_text(f"name,path,family,role\na,a,x,base\nb,b,x,{role}\n")
    with pytest.raises(ManifestError, match=rf"m\.csv, line 3: role '{role}' is not one of base, derivative"):
        read_manifest(path)


def test_roles_are_read_case_insensitively(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("name,path,family,role\na,a,x,BASE\nb,b,x,Derivative\nc,c,,\n")
    manifest = read_manifest(path)
    assert [r.name for r in manifest.references] == ["a"]
    assert [(r.name, r.role) for r in manifest.suspects] == [("b", "derivative"), ("c", None)]


def test_a_model_listed_twice_is_one_row(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("path,family,role\na,x,base\nb,,\n./b,,\n")
    assert [r.name for r in read_manifest(path).rows] == ["a", "b"]
    path.write_text("path,family,role\na,x,base\nb,,\nb,y,\n")
    with pytest.raises(ManifestError, match="line 4: the model of line 3 again"):
        read_manifest(path)


def test_scan_of_a_model_given_twice_has_one_row(tmp_path: Path):
    rng = np.random.default_rng(0)
    a = write_feature_json(tmp_path, "a", features(rng))
    b = write_feature_json(tmp_path, "b", features(rng))
    ref = write_manifest(tmp_path / "refs.csv", [{"name": "a", "path": a.name, "family": "x"}], ("name", "path"))
    result = scan([b, b, tmp_path / "." / b.name], ScanOptions(method="tensorguard", unknown="off"), references=ref)
    assert [r["model"] for r in result.rows] == ["b"]
