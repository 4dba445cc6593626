"""One model's work as a task a worker can run, and the driver's side of it.

A `Task` is what travels to a worker: plain values, the frozen probe settings and the model's `Pending`
(`lineage.fingerprint.obtain`: where it is, its cache key, for a hub model the commit), nothing large. The
worker runs it with `run_task` (`compute`: fingerprint and store) and answers with a `TaskResult` whose
fingerprint is a fingerprint file's bytes (`fingerprint_bytes`, the same format as on disk): the driver
parses them with `fingerprint_from_bytes`, so no fingerprint is unpickled, no temporary file is written,
and a worker on another machine needs no file system shared with the driver.

`Plan` is the driver's bookkeeping: it settles at once what costs no probing (fingerprint files, cache
hits, missing paths) with `locate`, as the serial loop does, hands out the rest as tasks, and turns results
back into outcomes in input order. Results the workers computed go into the driver's cache too, under the
key `locate` found (a no-op when the workers share the cache), so a driver restarted after a crash redoes
nothing that finished.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import Fingerprint, fingerprint_bytes, fingerprint_from_bytes
from lineage.fingerprint.gather import ModelOutcome, error_text, error_trace, report_outcome
from lineage.fingerprint.obtain import FINGERPRINTED, Pending, WeightProgress, compute, locate, needs_probing
from lineage.fingerprint.threads import limit_threads, pool_sizes
from lineage.io.adapter_base import AdapterBases, adapter_bases, current_adapter_bases
from lineage.io.names import model_name

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

#: Fault injection for tests of the retry path: `<model name>=<marker file>` makes the worker fingerprinting
#: that model kill itself with SIGKILL once its first weight block has streamed (mid-fingerprint), once:
#: the marker file records that it happened. An empty marker (`<model name>=`) kills every attempt.
FAULT_ENV = "LINEAGE_FAULT_KILL"


@dataclass(frozen=True)
class Task:
    """One model to fingerprint: its place in the input, its row name, what is left to do (`pending`), and how
    (`threads`: torch and BLAS threads for it, the worker's own setting when None; `adapter_bases`: where LoRA
    adapters find their base in the driver, a context variable a worker process does not inherit)."""

    index: int
    name: str | None
    pending: Pending
    options: FingerprintOptions | None
    cache_dir: str | None
    threads: int | None = None
    adapter_bases: AdapterBases | None = None


@dataclass(frozen=True)
class TaskResult:
    """A worker's answer: how the fingerprint was obtained and its file bytes, or the error text (and its
    traceback, as text: a worker's exception object may not unpickle in the driver), and the thread pools it
    ran on (`lineage.fingerprint.threads.pool_sizes`)."""

    index: int
    how: str | None
    error: str | None
    seconds: float
    payload: bytes | None = None
    trace: str | None = None
    pools: dict | None = None


def run_task(task: Task, weights: WeightProgress | None = None) -> TaskResult:
    """Fingerprint one model in a worker (cache first; the result is stored in the cache when there is one).

    Args:
        task: the model and settings.
        weights: `weights(done_bytes, total_bytes)` while its weights stream.

    Returns:
        The result; never raises for a bad model.
    """
    t0 = time.perf_counter()
    weights = _with_fault(task.name or model_name(task.pending.path), weights)
    cache = FingerprintCache(task.cache_dir) if task.cache_dir is not None else None
    if task.threads is not None:
        limit_threads(task.threads)
    try:
        bases = task.adapter_bases or AdapterBases()
        with adapter_bases(bases.default, bases.by_hub_id):
            fp, how = compute(task.pending, task.options, cache, name=task.name, progress=weights)
        seconds = time.perf_counter() - t0
        return TaskResult(task.index, how, None, seconds, fingerprint_bytes(fp), pools=pool_sizes())
    except Exception as exc:  # noqa: BLE001 - a bad model is a result, never a dead worker
        seconds = time.perf_counter() - t0
        return TaskResult(task.index, None, error_text(exc), seconds, trace=error_trace(exc), pools=pool_sizes())


class Plan:
    """The driver's side of a gather: cheap models settled at once, the rest as `tasks`, outcomes in order.

    Args:
        items: `(name or None, path, key)` per model.
        probe_options: returns the probe settings (called once, only if some model is a folder).
        cache: the driver's fingerprint cache, or None.
        progress: the caller's progress callback (told of every outcome as it comes).
        threads: torch threads per task (see `Task`).
    """

    def __init__(
        self,
        items: Sequence[tuple[str | None, Path, object]],
        probe_options: Callable[[], FingerprintOptions],
        cache: FingerprintCache | None,
        progress: Callable[[int, int, str], None] | None,
        threads: int | None = None,
    ) -> None:
        self.items, self.cache, self.progress = list(items), cache, progress
        self.outcomes: list[ModelOutcome | None] = [None] * len(self.items)
        self.tasks: list[Task] = []
        self._by_index: dict[int, Task] = {}
        self._done = 0
        options: FingerprintOptions | None = None
        cache_dir = str(cache.folder.resolve()) if cache is not None else None
        bases = current_adapter_bases()
        for index, (name, path, _) in enumerate(self.items):
            t0 = time.perf_counter()
            try:
                if options is None and needs_probing(path):  # the serial loop's rule, hub models included
                    options = probe_options()
                found = locate(path, options, cache, name)
            except Exception as exc:  # noqa: BLE001 - as in the serial loop: a bad model is an outcome
                self._settle(index, None, None, error_text(exc), time.perf_counter() - t0, trace=error_trace(exc))
                continue
            if isinstance(found, Pending):
                self.tasks.append(Task(index, name, found, options, cache_dir, threads, bases))
                self._by_index[index] = self.tasks[-1]
            else:
                self._settle(index, found[0], found[1], None, time.perf_counter() - t0)

    def label(self, index: int) -> str:
        name, path, _ = self.items[index]
        return name or model_name(path)

    def finish(self, result: TaskResult, attempts: int = 1) -> None:
        """Record a worker's result for its model."""
        fp = None
        error, trace = result.error, result.trace
        if error is None:
            try:
                fp = fingerprint_from_bytes(result.payload, f"the answer for {self.label(result.index)}")
                key = self._by_index[result.index].pending.key
                if self.cache is not None and key is not None and result.how == FINGERPRINTED:
                    # A worker on another machine wrote to its own disk.
                    self.cache.put_missing(key, fp, self._by_index[result.index].pending.model)
            except Exception as exc:  # noqa: BLE001 - a garbled answer fails its model, not the scan
                fp, error, trace = None, error_text(exc), error_trace(exc)
        how = result.how if fp is not None else None
        self._settle(result.index, fp, how, error, result.seconds, attempts, trace)

    def fail(self, index: int, error: str, attempts: int) -> None:
        """Record a model given up on (its workers kept dying)."""
        self._settle(index, None, None, error, 0.0, attempts)

    def result(self) -> list[ModelOutcome]:
        """The outcomes, in input order (every model must be settled)."""
        missing = [self.label(i) for i, o in enumerate(self.outcomes) if o is None]
        if missing:
            raise RuntimeError(f"models never settled: {', '.join(missing)}")  # a bug in an executor
        return list(self.outcomes)

    def _settle(
        self,
        index: int,
        fp: Fingerprint | None,
        how: str | None,
        error: str | None,
        seconds: float,
        attempts: int = 1,
        trace: str | None = None,
    ) -> None:
        name, path, key = self.items[index]
        label = fp.name if fp is not None else self.label(index)
        outcome = ModelOutcome(label, Path(path), fp, how, error, seconds, key, attempts, trace)
        self.outcomes[index] = outcome
        self._done += 1
        report_outcome(self.progress, self._done, len(self.items), outcome)


def _with_fault(label: str, weights: WeightProgress | None) -> WeightProgress | None:
    """`weights`, or, when FAULT_ENV names this model, a callback that kills this worker on its first call."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or "=" not in spec or spec.split("=", 1)[0] != label:
        return weights
    marker = spec.split("=", 1)[1]

    def die_once(done: int, total: int) -> None:
        if marker:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # exclusive: exactly one death
            except FileExistsError:
                if weights is not None:
                    weights(done, total)
                return
        os.kill(os.getpid(), signal.SIGKILL)

    return die_once
