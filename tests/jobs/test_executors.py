"""The executors: local worker processes and Ray give the serial scan's results; bad options and a missing Ray
are one clear error."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.errors import ExecutorError
from lineage.fingerprint import Fingerprint
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions, gather
from lineage.fingerprint.obtain import FINGERPRINTED
from lineage.jobs.scan import ScanOptions, scan
from lineage.refs.manifest import read_manifest

pytestmark = pytest.mark.slow


def probe_options():  # noqa: ANN201
    return ScanOptions(device="cpu").probe_options()


def assert_same_fingerprint(a: Fingerprint, b: Fingerprint, rtol: float = 0.0) -> None:
    """Equal arrays and features; `rtol` > 0 allows float32 rounding noise (another torch thread count)."""
    assert a.name == b.name
    np.testing.assert_array_equal(a.anchors, b.anchors)
    for part in ("sketches", "responses", "identity"):
        left, right = getattr(a, part), getattr(b, part)
        assert left.keys() == right.keys(), part
        for key in left:
            if rtol:
                np.testing.assert_allclose(left[key], right[key], rtol=rtol, atol=rtol, err_msg=f"{part}.{key}")
            else:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{part}.{key}")
    assert a.tensorguard.keys() == b.tensorguard.keys()
    for key in a.tensorguard:
        assert a.tensorguard[key] == pytest.approx(b.tensorguard[key], rel=rtol, abs=0.0), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "threads"}, "executor must be one of"),
        ({"kind": "process", "jobs": 0}, "jobs must be >= 1"),
        ({"kind": "process", "retries": -1}, "retries"),
        ({"kind": "process", "ray_address": "auto"}, "ray_address needs the ray executor"),
        ({"kind": "process", "threads": 0}, "threads"),
    ],
)
def test_executor_options_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExecutorOptions(**kwargs)


def test_process_executor_scan_equals_serial(mini_manifest: Path, serial_scan, tmp_path: Path) -> None:
    # The same torch threads as this process: the fingerprints must then be bit-identical to the serial ones.
    executor = ExecutorOptions(kind="process", jobs=2, threads=torch.get_num_threads())
    result = scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path, executor=executor))
    assert result.rows == serial_scan.rows
    assert [o.how for o in result.outcomes] == [FINGERPRINTED] * len(result.outcomes)
    for mine, theirs in zip(result.outcomes, serial_scan.outcomes, strict=True):
        assert_same_fingerprint(mine.fingerprint, theirs.fingerprint)
    # What the workers computed is in the driver's cache, byte for byte what a serial run stores.
    assert len(FingerprintCache(tmp_path)) == len(result.outcomes)


def test_process_executor_default_threads_changes_only_last_bits(mini_manifest: Path, serial_scan) -> None:
    # One thread per worker (2 cores / 2 jobs): float32 sums are split differently, so the numbers may move
    # in their last bits, never more.
    items = [(row.name, row.path, row) for row in read_manifest(mini_manifest).rows]
    outcomes = gather(items, probe_options, None, None, ExecutorOptions("process", 2))
    for mine, theirs in zip(outcomes, serial_scan.outcomes, strict=True):
        assert mine.ok, mine.error
        assert_same_fingerprint(mine.fingerprint, theirs.fingerprint, rtol=1e-5)


def test_process_executor_reports_bad_models_as_rows(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x00" * 16)
    items = [("missing", tmp_path / "nowhere", None), ("bad", bad, None)]
    outcomes = gather(items, probe_options, None, None, ExecutorOptions("process", 2))
    assert [o.name for o in outcomes] == ["missing", "bad"]
    assert "no such file or folder" in outcomes[0].error
    assert outcomes[1].error and "model.safetensors" in outcomes[1].error


def test_ray_executor_without_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch, mini_manifest: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    options = ScanOptions(device="cpu", use_cache=False, executor=ExecutorOptions(kind="ray"))
    with pytest.raises(ExecutorError, match=r"pip install 'lineage\[ray\]'"):
        scan(mini_manifest, options)


def test_ray_executor_scan_equals_serial(mini_manifest: Path, serial_scan, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")  # skipped only where Ray is not installed: a failed start-up is a failure
    for attempt in range(3):  # its raylet has 30 s to register, which a loaded machine can miss: tried again
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    try:
        executor = ExecutorOptions(kind="ray", jobs=2, threads=torch.get_num_threads())
        result = scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path, executor=executor))
        again = scan(mini_manifest, replace(ScanOptions(device="cpu", cache_dir=tmp_path), executor=executor))
    finally:
        ray.shutdown()
    assert result.rows == serial_scan.rows
    for mine, theirs in zip(result.outcomes, serial_scan.outcomes, strict=True):
        assert mine.how == FINGERPRINTED
        assert_same_fingerprint(mine.fingerprint, theirs.fingerprint)
    # The tasks wrote every fingerprint to the shared cache: a second scan computes nothing.
    assert again.summary["cached"] == len(again.outcomes) and again.summary["fingerprinted"] == 0
