"""The reference pack shipped in the package (SmolLM2-135M-Instruct): current, sound, and rebuildable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lineage.refs import read_pack_info, read_pack_settings, verify_pack
from lineage.refs.builtin import COMMAND, FAMILY, NAME, build_builtin_pack, builtin_pack_folder


def _current_settings() -> dict:
    from lineage.fingerprint.pipeline import FingerprintOptions

    return FingerprintOptions().settings()


def test_shipped_pack_was_made_by_the_current_pipeline() -> None:
    pack = builtin_pack_folder()
    assert read_pack_info(pack)["created"]["by"] == COMMAND
    current = _current_settings()
    # A stale pack fails here: its references would not compare with new fingerprints.
    assert read_pack_settings(pack) == current, f"the shipped pack is stale: run `{COMMAND}`"
    assert verify_pack("builtin", current_settings=current) == []


def test_builtin_reads_as_a_reference_manifest() -> None:
    from lineage.jobs.manifest import read_manifest

    manifest = read_manifest("builtin")
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
