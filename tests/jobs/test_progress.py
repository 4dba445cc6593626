"""Progress inside a model (weight bytes as blocks stream) and across a job (models done, cached, failed),
serially and through worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli._progress import ScanProgress
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions, gather
from lineage.fingerprint.gather import gather_fingerprints
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from tests.checkpoints import tiny_llama_tensors, write_checkpoint


def probe_options() -> FingerprintOptions:
    return FingerprintOptions(device="cpu")


class Recorder:
    """A progress object with every hook, keeping what it was told."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, int, str]] = []
        self.outcomes: list = []
        self.weights_seen: dict[str, list[tuple[int, int]]] = {}

    def __call__(self, done: int, total: int, name: str) -> None:
        self.ticks.append((done, total, name))

    def finished(self, outcome) -> None:  # noqa: ANN001
        self.outcomes.append(outcome)

    def weights(self, name: str, done: int, total: int) -> None:
        self.weights_seen.setdefault(name, []).append((done, total))


@pytest.fixture()
def models(tmp_path: Path) -> list[Path]:
    return [write_checkpoint(tmp_path / f"m{seed}", tiny_llama_tensors(seed)) for seed in range(3)]


def test_fingerprint_reports_weight_bytes_per_block(models: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import lineage.fingerprint.pipeline as pipeline

    monkeypatch.setattr(pipeline, "block_bytes", lambda device: 2048)  # several blocks per matrix
    calls: list[tuple[int, int]] = []
    fingerprint_model(models[0], probe_options(), progress=lambda done, total: calls.append((done, total)))
    with open_checkpoint(models[0]) as reader:
        weight_bytes = sum(info.end - info.start for info in reader)
        matrices = sum(1 for info in reader if len(info.shape) == 2)
    totals = {total for _, total in calls}
    assert totals == {weight_bytes}  # every tensor of this checkpoint is the text model's own
    assert calls[-1] == (weight_bytes, weight_bytes)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))
    assert len(calls) > matrices  # per block, not per tensor or per layer
    assert calls[-2][0] > weight_bytes // 2  # the stream itself covered most bytes, not the final call


def test_serial_gather_tells_progress_everything(models: list[Path], tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path / "cache")
    items = [(None, path, None) for path in models] + [(None, tmp_path / "nowhere", None)]
    first, second = Recorder(), Recorder()
    gather_fingerprints(items, probe_options, cache, first)
    gather_fingerprints(items, probe_options, cache, second)
    assert [t[:2] for t in first.ticks] == [(i, 4) for i in range(1, 5)]
    assert [o.how for o in first.outcomes] == ["fingerprinted"] * 3 + [None]
    assert [o.how for o in second.outcomes] == ["cached"] * 3 + [None]
    assert sorted(first.weights_seen) == ["m0", "m1", "m2"]
    assert all(seen[-1][0] == seen[-1][1] > 0 for seen in first.weights_seen.values())
    assert second.weights_seen == {}  # nothing streamed on a cached scan


@pytest.mark.slow
def test_process_workers_relay_weight_progress(models: list[Path]) -> None:
    recorder = Recorder()
    outcomes = gather(
        [(None, path, None) for path in models], probe_options, None, recorder, ExecutorOptions("process", 2)
    )
    assert all(o.ok for o in outcomes)
    assert sorted(o.name for o in recorder.outcomes) == ["m0", "m1", "m2"]
    assert [t[0] for t in recorder.ticks] == [1, 2, 3]
    # Throttled in the worker, but the last report of each model always arrives: done == total.
    assert sorted(recorder.weights_seen) == ["m0", "m1", "m2"]
    assert all(seen[-1][0] == seen[-1][1] > 0 for seen in recorder.weights_seen.values())


def test_scan_progress_counts_and_byte_bar(
    models: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LINEAGE_NO_PROGRESS", raising=False)
    cache = FingerprintCache(tmp_path / "cache")
    items = [(None, path, None) for path in models[:2]] + [(None, tmp_path / "nowhere", None)]
    with ScanProgress(mode="bars") as bars:  # as on a terminal (pytest's stderr is not one)
        gather_fingerprints(items, probe_options, cache, bars)
        assert bars.counts == {"fingerprinted": 2, "cached": 0, "loaded": 0, "failed": 1}
        assert bars.models.n == 3
        assert bars.bytes is not None and bars.bytes.n == bars.bytes.total > 0
        streamed = bars.bytes.total
        gather_fingerprints(items, probe_options, cache, bars)
        assert bars.counts["cached"] == 2 and bars.bytes.total == streamed


def test_cli_executor_options(tmp_path: Path, models: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from lineage.cli.app import app

    runner = CliRunner(env={"LINEAGE_NO_PROGRESS": "1", "LINEAGE_DEBUG": None})
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("name,path,family\n" + "".join(f"{p.name},{p},f{i}\n" for i, p in enumerate(models)))
    bad = runner.invoke(app, ["scan", str(manifest), "--ray-address", "auto"])
    assert bad.exit_code == 2 and "--ray-address needs --executor ray" in bad.output
    serial_jobs = runner.invoke(app, ["scan", str(manifest), "--jobs", "4"])
    assert serial_jobs.exit_code == 2 and "--jobs needs --executor process" in serial_jobs.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as when Ray is not installed
    no_ray = runner.invoke(app, ["scan", str(manifest), "--executor", "ray", "--no-cache"])
    assert no_ray.exit_code == 1
    hint = "the ray executor needs Ray: pip install 'lineage[ray]' (or pip install 'ray>=2.9')"
    assert no_ray.stderr.strip() == f"error: {hint}"
