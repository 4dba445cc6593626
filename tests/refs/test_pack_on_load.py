"""Issue 17, finding 4: a reference pack is checked against its own sha256 list whenever it is used; a
flipped byte or a deleted reference is a one-line refusal naming the file; --skip-pack-check skips the check."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.errors import PackError
from lineage.refs import PackReference, write_pack
from lineage.refs.open import open_references
from tests.fakes import fake_fingerprint, family_centres, write_fake


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    c = family_centres()
    refs = [
        PackReference("llama-base", "llama", fake_fingerprint("llama-base", c["llama"], 1)),
        PackReference("qwen-base", "qwen", fake_fingerprint("qwen-base", c["qwen"], 2)),
    ]
    return write_pack(refs, tmp_path / "refs.pack")


def _flip_last_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01  # inside the tensor data: the file still loads, with another number in it
    file.write_bytes(bytes(data))


def _classify(tmp_path: Path, pack: Path, *extra: str):  # noqa: ANN202 - a click Result
    suspect = write_fake(tmp_path / "suspects", "upload", family_centres()["llama"], 5)
    env = {"LINEAGE_CACHE": str(tmp_path / "cache"), "LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None}
    runner = CliRunner(env=env)
    return runner.invoke(app, ["classify", str(suspect), "-r", str(pack), "--method", "tensorguard", *extra])


def test_a_flipped_byte_is_refused_in_one_line_naming_the_file(pack: Path, tmp_path: Path) -> None:
    file = pack / "fingerprints" / "llama-base.fingerprint.safetensors"
    _flip_last_byte(file)
    with pytest.raises(PackError, match="llama-base.fingerprint.safetensors: altered"):
        open_references(pack)
    result = _classify(tmp_path, pack)
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and str(file) in line and "--skip-pack-check" in line
    trusted = _classify(tmp_path, pack, "--skip-pack-check")
    assert trusted.exit_code == 0, trusted.output  # checked already: used as it is
    assert "upload" in trusted.stdout


def test_a_deleted_reference_is_refused(pack: Path, tmp_path: Path) -> None:
    (pack / "fingerprints" / "qwen-base.fingerprint.safetensors").unlink()
    result = _classify(tmp_path, pack)
    assert result.exit_code == 1
    assert "qwen-base.fingerprint.safetensors: missing" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_sound_pack_reads_and_classifies(pack: Path, tmp_path: Path) -> None:
    assert [r.name for r in open_references(pack).references] == ["llama-base", "qwen-base"]
    result = _classify(tmp_path, pack)
    assert result.exit_code == 0, result.output
    assert "related to llama" in result.stdout


# --- issue 25: a pack only through its check ------------------------------------------------------------


def _swap(a: Path, b: Path) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def test_a_packs_own_manifest_is_the_pack_checked(pack: Path, tmp_path: Path) -> None:
    prints = pack / "fingerprints"
    _swap(prints / "llama-base.fingerprint.safetensors", prints / "qwen-base.fingerprint.safetensors")
    for given in (pack, pack / "manifest.csv"):  # the manifest used to skip every check: verdicts swapped
        with pytest.raises(PackError, match="altered"):
            open_references(given)
    result = _classify(tmp_path, pack / "manifest.csv")
    assert result.exit_code == 1 and "altered" in result.stderr and result.stdout == ""


def test_skipping_the_check_says_so_once(pack: Path, tmp_path: Path) -> None:
    result = _classify(tmp_path, pack, "--skip-pack-check")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and "without checking its files' sha256" in warned[0] and str(pack) in warned[0]
    assert _classify(tmp_path, pack).stderr == ""  # checked: nothing to say


def test_a_pack_without_pack_json_is_refused_not_read_unchecked(pack: Path) -> None:
    (pack / "pack.json").unlink()
    for given in (pack, pack / "manifest.csv"):  # the folder was answered with advice to pass that manifest
        with pytest.raises(PackError, match="has no pack.json, so its files cannot be checked"):
            open_references(given)


def test_another_file_inside_a_pack_is_refused(pack: Path) -> None:
    copy = pack / "mine.csv"
    copy.write_text((pack / "manifest.csv").read_text())
    with pytest.raises(PackError, match="is inside the reference pack"):
        open_references(copy)
