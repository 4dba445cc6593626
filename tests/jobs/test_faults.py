"""Faults: a worker killed mid-fingerprint is retried, a crashed driver resumes from the cache, and scans
sharing one cache never leave a torn fingerprint."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.fingerprint import Fingerprint
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions
from lineage.fingerprint.executors.tasks import FAULT_ENV
from lineage.fingerprint.format import TENSORGUARD_FEATURES, load_fingerprint, save_fingerprint
from lineage.fingerprint.obtain import CACHED, FINGERPRINTED
from lineage.jobs.scan import ScanOptions, scan
from lineage.refs.manifest import read_manifest

VICTIM = "llama-8b-ft-email"


@pytest.mark.slow
def test_killed_worker_costs_one_retry(
    mini_manifest: Path, serial_scan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"{VICTIM}={marker}")  # the worker SIGKILLs itself after its first block
    executor = ExecutorOptions(kind="process", jobs=2, threads=torch.get_num_threads())
    result = scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path / "cache", executor=executor))
    assert marker.exists()  # a worker really died
    assert [o.name for o in result.outcomes] == [row.name for row in read_manifest(mini_manifest).rows]
    assert {o.name: o.attempts for o in result.outcomes} == {
        o.name: 2 if o.name == VICTIM else 1 for o in result.outcomes
    }
    assert not result.failed
    assert result.rows == serial_scan.rows


@pytest.mark.slow
def test_worker_dying_every_time_fails_its_row_only(
    mini_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, f"{VICTIM}=")  # no marker: every attempt dies
    executor = ExecutorOptions(kind="process", jobs=2, retries=1)
    result = scan(mini_manifest, ScanOptions(device="cpu", cache_dir=tmp_path, executor=executor))
    assert result.failed == [VICTIM]
    victim = next(o for o in result.outcomes if o.name == VICTIM)
    assert victim.attempts == 2 and "worker died" in victim.error and "-9" in victim.error
    assert all(o.ok and o.attempts == 1 for o in result.outcomes if o.name != VICTIM)


@pytest.mark.slow
def test_restarted_driver_resumes_from_cache(mini_manifest: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # A driver killed (SIGKILL: no clean-up of any kind) right after its third model.
    script = textwrap.dedent(
        f"""
        import os, signal
        from lineage.jobs.scan import ScanOptions, scan

        def crash(done, total, name):
            if done == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        scan({str(mini_manifest)!r}, ScanOptions(device="cpu", cache_dir={str(cache)!r}), progress=crash)
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=600)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    assert len(FingerprintCache(cache)) == 3
    executor = ExecutorOptions(kind="process", jobs=2)
    result = scan(mini_manifest, ScanOptions(device="cpu", cache_dir=cache, executor=executor))
    assert [o.how for o in result.outcomes] == [CACHED] * 3 + [FINGERPRINTED] * (len(result.outcomes) - 3)
    assert len(FingerprintCache(cache)) == len(result.outcomes)


def _fingerprint(writer: int) -> Fingerprint:
    """A fingerprint whose every sketch value is `writer`: a torn file would mix two writers' values."""
    return Fingerprint(
        name=f"writer-{writer}",
        tensorguard={k: float(writer) for k in TENSORGUARD_FEATURES},
        anchors=np.arange(64),
        sketches={"qk": np.full((16, 64, 64), writer, np.float32), "vo": np.full((16, 64, 64), writer, np.float32)},
    )


# Self-contained (no test module, no torch): four of these start at once on a small machine.
_WRITER = """
import sys
import numpy as np
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import TENSORGUARD_FEATURES, Fingerprint

writer, folder, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cache = FingerprintCache(folder)
fp = Fingerprint(
    name=f"writer-{writer}",
    tensorguard={k: float(writer) for k in TENSORGUARD_FEATURES},
    anchors=np.arange(64),
    sketches={c: np.full((16, 64, 64), writer, np.float32) for c in ("qk", "vo")},
)
for _ in range(rounds):
    cache.put("a" * 64, fp)  # the key every writer shares
    cache.put(f"{writer}" * 64, fp)  # this writer's own key
"""


def test_concurrent_cache_writers_never_leave_a_torn_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(w), str(tmp_path), "30"], cwd=root, stderr=subprocess.PIPE)
        for w in range(1, 5)
    ]
    cache = FingerprintCache(tmp_path)
    shared = cache.path_for("a" * 64)
    seen = set()
    while any(w.poll() is None for w in writers):
        if shared.is_file():  # a reader meanwhile: whatever it finds is one writer's whole file
            fp = load_fingerprint(shared)
            values = {float(v) for arr in fp.sketches.values() for v in np.unique(arr)}
            assert len(values) == 1 and fp.name == f"writer-{int(values.pop())}"
            seen.add(fp.name)
    for w in writers:
        assert w.wait() == 0, w.stderr.read().decode()[-2000:]
    assert seen  # the reader did read while they wrote
    for w in range(1, 5):
        assert load_fingerprint(cache.path_for(f"{w}" * 64)).name == f"writer-{w}"
    assert load_fingerprint(shared).name.startswith("writer-")
    assert len(cache) == 5
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(".tmp")]  # no litter


def test_save_fingerprint_leaves_no_temporary_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lineage.fingerprint.format as fmt

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError("disk full")

    # The bytes are made in memory and written to a temporary file first: fail the step that publishes it.
    monkeypatch.setattr(fmt.os, "replace", broken)
    target = tmp_path / "x.fingerprint.safetensors"
    with pytest.raises(OSError, match="disk full"):
        save_fingerprint(_fingerprint(1), target)
    assert list(tmp_path.iterdir()) == []
