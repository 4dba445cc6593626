"""The fingerprint store: writing, reading, incremental builds, and blocked classification."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage.errors import StoreError
from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint, save_fingerprint
from lineage.store import (
    Embedder,
    EmbeddingOptions,
    ReferenceVectors,
    Store,
    StoreWriter,
    build_store,
    classify_store,
    reference_vectors,
)

P, LAYERS = 24, 3


def _sketches(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {c: rng.normal(size=(1, P, P)).astype(np.float32) for c in ("embed", "head", "unembed")}
    return out | {c: rng.normal(size=(LAYERS, P, P)).astype(np.float32) for c in ("qk", "vo", "ffn")}


def _fp(name: str, sketches: dict, seed: int = 0) -> Fingerprint:
    return Fingerprint(
        name,
        dict.fromkeys(TENSORGUARD_FEATURES, 0.0),
        anchors=np.arange(300, 300 + P),
        sketches=sketches,
        settings={"pipeline": 7, "seed": seed, "layout": "llama", "layers": list(range(LAYERS))},
    )


@pytest.fixture
def family_fps() -> tuple[list[Fingerprint], list[str], list[Fingerprint], list[int]]:
    """3 bases of 3 families; 4 noisy derivatives of each (the index of their base)."""
    rng = np.random.default_rng(0)
    bases, suspects, truth = [], [], []
    for f in range(3):
        base = _sketches(rng)
        bases.append(_fp(f"base{f}", base))
        for d in range(4):
            noisy = {c: (s + 0.3 * rng.normal(size=s.shape)).astype(np.float32) for c, s in base.items()}
            suspects.append(_fp(f"fam{f}-d{d}", noisy))
            truth.append(f)
    return bases, [f"fam{f}" for f in range(3)], suspects, truth


def test_writer_appends_and_reader_maps(tmp_path: Path) -> None:
    out = tmp_path / "s"
    rng = np.random.default_rng(0)
    v1, v2 = rng.normal(size=(3, 16)).astype(np.float32), rng.normal(size=(2, 16)).astype(np.float32)
    lay = {"basis": "ids", "tokens": [], "seed": 0}
    with StoreWriter(out, EmbeddingOptions(dim=16)) as w:
        w.append(["a", "b", "c"], ["ka", "kb", "kc"], v1, [w.layout_index(lay)] * 3)
    with StoreWriter(out) as w:
        assert w.keys() == {"ka", "kb", "kc"}
        w.append(["d", "e"], ["kd", "ke"], v2, [w.layout_index(lay)] * 2)
    store = Store(out)
    assert len(store) == 5 and store.names() == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose(store.vectors, np.concatenate([v1, v2]), atol=2e-3)
    assert store.info.layouts == [lay]
    with pytest.raises(StoreError, match="other embedding options"):
        StoreWriter(out, EmbeddingOptions(dim=32))


def test_torn_append_is_cut_back_to_the_committed_rows(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with StoreWriter(out, EmbeddingOptions(dim=8)) as w:
        w.append(["a"], ["ka"], np.ones((1, 8)), [0])
    # A crash after the vectors and a name were written, before store.json was committed.
    with (out / "vectors.f16").open("ab") as fh:
        fh.write(np.ones((1, 8), np.float16).tobytes())
    with (out / "names.txt").open("a") as fh:
        fh.write("torn\n")
    assert len(Store(out)) == 1 and Store(out).names() == ["a"]
    with StoreWriter(out) as w:
        w.append(["b"], ["kb"], np.zeros((1, 8)), [0])
    store = Store(out)
    assert store.names() == ["a", "b"] and (out / "vectors.f16").stat().st_size == 2 * 8 * 2
    np.testing.assert_array_equal(store.vectors[1], np.zeros(8))


def test_not_a_store_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(StoreError, match="not a fingerprint store"):
        Store(tmp_path / "x")
    (tmp_path / "x" / "store.json").write_text("{broken")
    with pytest.raises(StoreError, match="unreadable"):
        Store(tmp_path / "x")


def test_build_from_a_cache_is_incremental_and_skips_other_settings(tmp_path: Path, family_fps) -> None:
    bases, _, suspects, _ = family_fps
    cache = tmp_path / "cache"
    for i, fp in enumerate(suspects[:6]):
        save_fingerprint(fp, cache / "by-key" / f"{i:02d}" / f"{i:02d}abc.fingerprint.safetensors")
    first = build_store([cache], tmp_path / "store", EmbeddingOptions(dim=64))
    assert (first.added, first.present, first.incompatible, first.total) == (6, 0, 0, 6)
    for i, fp in enumerate(suspects[6:], start=6):
        save_fingerprint(fp, cache / "by-key" / f"{i:02d}" / f"{i:02d}abc.fingerprint.safetensors")
    odd = _fp("other-seed", bases[0].sketches, seed=5)
    save_fingerprint(odd, cache / "by-key" / "zz" / "zzabc.fingerprint.safetensors")
    second = build_store([cache], tmp_path / "store")
    assert (second.added, second.present, second.incompatible, second.total) == (6, 6, 1, 12)
    assert "other probe settings" in second.notes[0]
    store = Store(tmp_path / "store")
    assert sorted(store.names()) == sorted(fp.name for fp in suspects)
    # The stored vector is the embedding, rounded to float16.
    by_name = dict(zip(store.names(), np.asarray(store.vectors, dtype=np.float32)))
    expected = Embedder(EmbeddingOptions(dim=64)).embed(suspects[3])
    np.testing.assert_allclose(by_name[suspects[3].name], expected, atol=2e-3)


def test_compact_similarity_tracks_the_exact_one(family_fps) -> None:
    from lineage.compare.similarity import sketch_similarity_matrix

    bases, _, suspects, truth = family_fps
    fps = [*bases, *suspects]
    exact = sketch_similarity_matrix(fps, fps)
    vectors = Embedder(EmbeddingOptions(dim=256)).embed_many(fps)
    approx = vectors @ vectors.T
    np.testing.assert_allclose(np.diag(approx), 1.0, atol=1e-4)  # each half rescaled to its exact norm
    err = approx - exact
    family = np.array([0, 1, 2, *truth])
    related = (family[:, None] == family[None, :]) & ~np.eye(len(fps), dtype=bool)
    # Related pairs: close (the rescaled projection errs little for similar vectors). Unrelated pairs: the
    # exact layer matching takes the best of several random correlations, the depth pooling does not.
    assert np.sqrt(np.mean(err[related] ** 2)) < 0.05
    assert np.abs(err[~related]).max() < 0.25
    # Every suspect's nearest base is the same by both.
    assert np.array_equal(approx[3:, :3].argmax(axis=1), exact[3:, :3].argmax(axis=1))


def test_classify_store_finds_each_base_and_blocks_do_not_matter(tmp_path: Path, family_fps) -> None:
    bases, families, suspects, truth = family_fps
    folder = tmp_path / "fps"
    for fp in suspects:
        save_fingerprint(fp, folder / f"{fp.name}.fingerprint.safetensors")
    build_store([folder], tmp_path / "store", EmbeddingOptions(dim=128))
    store = Store(tmp_path / "store")
    refs = reference_vectors(bases, families, store.info.embedding)
    whole = classify_store(store, refs, threshold=0.8)
    blocked = classify_store(store, refs, threshold=0.8, block_rows=5)
    order = [int(n.split("-")[0][3:]) for n in store.names()]
    assert whole.nearest.tolist() == order
    np.testing.assert_array_equal(whole.nearest, blocked.nearest)
    np.testing.assert_allclose(whole.similarity, blocked.similarity, rtol=1e-6)
    assert not whole.unknown.any()
    # With a threshold right at the suspects' similarity, every verdict is a close call.
    level = float(np.median(whole.similarity))
    near = classify_store(store, refs, threshold=1 - level, margin=0.2)
    assert near.needs_exact.all()


def test_a_reference_of_another_family_close_by_is_flagged(tmp_path: Path) -> None:
    refs = ReferenceVectors(
        ("a", "b", "c"),
        ("f1", "f2", "f1"),
        np.array([[1.0, 0.0, 0.0, 0.0], [0.96, 0.28, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]] * 1, np.float32).repeat(4, 1) / 2,
        ({"basis": "ids", "tokens": [], "seed": 0},) * 3,
    )
    with StoreWriter(tmp_path / "s", EmbeddingOptions(dim=16)) as w:
        w.append(["near-a", "near-c"], ["1", "2"], refs.vectors[[0, 2]], [w.layout_index(refs.layouts[0])] * 2)
    v = classify_store(Store(tmp_path / "s"), refs, threshold=None, margin=0.1)
    assert v.nearest.tolist() == [0, 2]
    assert v.needs_exact.tolist() == [True, False]  # a and b (another family) are 0.04 apart; c stands alone


def test_cli_store_build_and_classify(tmp_path: Path, family_fps) -> None:
    from lineage.cli.app import app
    from lineage.refs import PackReference, write_pack

    bases, families, suspects, _ = family_fps
    pack = write_pack([PackReference(b.name, f, b) for b, f in zip(bases, families)], tmp_path / "pack")
    folder = tmp_path / "fps"
    for fp in suspects:
        save_fingerprint(fp, folder / f"{fp.name}.fingerprint.safetensors")
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    built = runner.invoke(app, ["store", "build", str(folder), "--out", str(tmp_path / "store"), "--dim", "128"])
    assert built.exit_code == 0, built.output
    assert "12 added" in built.output
    result = runner.invoke(
        app, ["store", "classify", str(tmp_path / "store"), "--reference", str(pack), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 12
    assert all(r["nearest"] == f"base{r['model'][3]}" and r["family"] == f"fam{r['model'][3]}" for r in rows)
    csv_out = tmp_path / "out.csv"
    result = runner.invoke(app, ["store", "classify", str(tmp_path / "store"), "-r", str(pack), "--out", str(csv_out)])
    assert result.exit_code == 0, result.output
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "model,nearest,similarity,family,nearest_family,needs_exact,status,path" and len(lines) == 13
    assert all(r["status"] == "ok" and r["path"] for r in rows)  # each row says where its fingerprint came from
