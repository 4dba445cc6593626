"""Reference packs: built from the mini catalog, verified, and classifying without the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lineage.cli.app import app
from lineage.errors import PackError
from lineage.refs import PackReference, is_pack, read_pack_info, verify_pack, write_pack

from .conftest import cli_runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pack(mini_manifest: Path, mini_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "mini.pack"
    result = cli_runner(mini_cache).invoke(app, ["refs", "build", str(mini_manifest), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def test_pack_is_self_describing(pack: Path) -> None:
    info = read_pack_info(pack)
    assert is_pack(pack)
    assert info["references"] == 2 and info["families"] == ["llama", "mistral"]
    listed = set(info["files"])
    on_disk = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()} - {"pack.json"}
    assert listed == on_disk
    assert {"manifest.csv", "settings.json"} <= listed
    manifest = (pack / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "name,path,family,base,role,license,hub_id"  # license: what derivatives inherit
    assert {line.split(",")[0] for line in manifest[1:]} == {"llama-8b", "mistral-7b"}
    from lineage.fingerprint.pipeline import FingerprintOptions

    settings = json.loads((pack / "settings.json").read_text())
    assert settings == {k: v for k, v in FingerprintOptions().settings().items() if k in settings}
    assert settings["pipeline"] == FingerprintOptions().settings()["pipeline"]


def test_pack_verifies(pack: Path, mini_cache: Path) -> None:
    result = cli_runner(mini_cache).invoke(app, ["refs", "verify", str(pack)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok")


def test_verify_names_every_problem(pack: Path, tmp_path: Path, mini_cache: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(pack, broken)
    llama = broken / "fingerprints" / "llama-8b.fingerprint.safetensors"
    data = bytearray(llama.read_bytes())
    data[-1] ^= 0xFF
    llama.write_bytes(bytes(data))
    (broken / "fingerprints" / "mistral-7b.fingerprint.safetensors").unlink()
    (broken / "notes.txt").write_text("not part of the pack")
    result = cli_runner(mini_cache).invoke(app, ["refs", "verify", str(broken)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert any("llama-8b.fingerprint.safetensors: altered" in line for line in lines)
    assert any("mistral-7b.fingerprint.safetensors: missing" in line for line in lines)
    assert any("notes.txt: extra file" in line for line in lines)


def test_verify_rejects_another_format_version(pack: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(pack, other)
    doc = json.loads((other / "pack.json").read_text())
    doc["format_version"] = 99
    (other / "pack.json").write_text(json.dumps(doc))
    problems = verify_pack(other)
    assert len(problems) == 1 and "format version 99" in problems[0]
    from lineage.errors import ManifestError
    from lineage.refs import open_references

    with pytest.raises((PackError, ManifestError), match="format version 99"):
        open_references(other)


def test_verify_flags_a_stale_pipeline(pack: Path) -> None:
    from lineage.fingerprint.pipeline import FingerprintOptions

    current = FingerprintOptions().settings()
    assert verify_pack(pack, current_settings=current) == []
    stale = verify_pack(pack, current_settings={**current, "pipeline": current["pipeline"] + 1})
    assert len(stale) == 1 and "rebuild the pack" in stale[0]


def test_pack_reads_as_a_manifest_of_fingerprint_files(pack: Path) -> None:
    from lineage.refs import open_references

    manifest = open_references(pack)
    assert [r.role for r in manifest.references] == ["base", "base"]
    assert all(r.path.is_file() and r.path.parent == pack / "fingerprints" for r in manifest.rows)


def test_pack_classifies_on_a_machine_without_the_weights(
    pack: Path, mini_manifest: Path, mini_fingerprints: dict, tmp_path: Path
) -> None:
    # The suspect's fingerprint file travels; the catalog (every weight file) is moved away.
    suspect = tmp_path / "suspect.fingerprint.safetensors"
    shutil.copy(mini_fingerprints["llama-8b-mergelock"], suspect)
    elsewhere = tmp_path / "pack-copy"
    shutil.copytree(pack, elsewhere)
    catalog = mini_manifest.parent
    moved = catalog.with_name(catalog.name + "-moved")
    catalog.rename(moved)
    try:
        result = cli_runner(tmp_path / "empty-cache").invoke(
            app, ["classify", str(suspect), "--reference", str(elsewhere), "--format", "json", "--no-cache", "--quiet"]
        )
    finally:
        moved.rename(catalog)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 1
    assert rows[0]["family"] == "llama"
    assert rows[0]["distances"]["llama-8b"] < 0.05 and rows[0]["distances"]["mistral-7b"] > 0.5


def test_attribute_accepts_a_pack(pack: Path, mini_fingerprints: dict) -> None:
    from lineage.refs import open_references

    rows = open_references(pack).rows
    assert {r.name for r in rows} == {"llama-8b", "mistral-7b"}


def _fp(name: str, seed: int):  # noqa: ANN202
    from lineage.fingerprint import TENSORGUARD_FEATURES, Fingerprint

    rng = np.random.default_rng(seed)
    sk = {c: rng.normal(size=(1, 16, 16)).astype(np.float32) for c in ("embed", "head", "unembed")}
    return Fingerprint(
        name,
        dict.fromkeys(TENSORGUARD_FEATURES, 0.0),
        anchors=np.arange(300, 316),
        sketches=sk,
        settings={"pipeline": 9, "seed": seed, "layout": "llama"},
    )


def test_write_pack_refuses_mixed_probe_settings(tmp_path: Path) -> None:
    refs = [PackReference("a", "f1", _fp("a", 0)), PackReference("b", "f2", _fp("b", 1))]
    with pytest.raises(PackError, match="other probe settings"):
        write_pack(refs, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_write_pack_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    refs = [PackReference("a/b:c", "f1", _fp("a", 0)), PackReference("d", "f2", _fp("d", 0))]
    out = write_pack(refs, tmp_path / "p")
    assert sorted(p.name for p in (out / "fingerprints").iterdir()) == [
        "a_b_c.fingerprint.safetensors",
        "d.fingerprint.safetensors",
    ]
    with pytest.raises(PackError, match="--force"):
        write_pack(refs, out)
    write_pack(refs[:1], out, force=True)
    assert read_pack_info(out)["references"] == 1 and verify_pack(out) == []
