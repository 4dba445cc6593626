"""Fingerprinting many models: one bad model is recorded and the batch goes on.

`fingerprint_paths` expands each path (a model folder or a folder of model folders), fingerprints every
model, writes one file per model, and returns one outcome per model, failed ones with their error text.
Serially the models are fingerprinted one at a time as the files are written; on an executor
(`lineage.jobs.executors`: local worker processes, Ray) they are all gathered first, then written in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.fingerprint.cache import error_text, obtain_fingerprint, weights_hook
from lineage.fingerprint.format import Fingerprint, fingerprint_path, save_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions

if TYPE_CHECKING:
    from lineage.jobs.executors import ExecutorOptions


@dataclass(frozen=True)
class FingerprintOutcome:
    """One model's result in a batch: a fingerprint and its file, or an error."""

    path: Path
    name: str
    fingerprint: Fingerprint | None
    file: Path | None
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fingerprint_paths(
    models: Iterable[tuple[Path, str | None]],
    options: FingerprintOptions,
    out_dir: str | Path,
    on_model: Callable[[FingerprintOutcome], None] | None = None,
    executor: ExecutorOptions | None = None,
    progress: object = None,
) -> list[FingerprintOutcome]:
    """Fingerprint every model and write `<out_dir>/<name>.fingerprint.safetensors`.

    Args:
        models: `lineage.fingerprint.cache.expand_inputs(...)` of the paths given (model folders or folders
            of model folders).
        options: probe settings.
        out_dir: where the fingerprint files go.
        on_model: called after each model is written.
        executor: where to fingerprint (`lineage.jobs.executors`); one model after another when None.
        progress: an object with the `weights(name, done_bytes, total_bytes)` hook of
            `lineage.fingerprint.cache` (weight bytes streamed; models are counted by `on_model`).

    Returns:
        One outcome per model, in order; failures carry `error` and no fingerprint. Two models of one name
        (`org1/llama`, `org2/llama`) are written as `llama` and `org2__llama`, never over each other.
    """
    models = list(models)
    computed = _computed(models, options, executor, progress)
    outcomes, used = [], set()
    for model, problem in models:
        fp = file = None
        seconds = 0.0
        if problem is None:
            fp, problem, seconds = next(computed)
        start = time.perf_counter()
        if fp is not None:
            try:
                if fp.name in used:
                    fp = replace(fp, name=f"{model.parent.name}__{fp.name}")
                used.add(fp.name)
                file = save_fingerprint(fp, fingerprint_path(out_dir, fp.name))
            except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
                fp, problem = None, error_text(exc)
        name = fp.name if fp else model.name
        outcome = FingerprintOutcome(model, name, fp, file, seconds + time.perf_counter() - start, problem)
        outcomes.append(outcome)
        if on_model:
            on_model(outcome)
    return outcomes


def _computed(
    models: list[tuple[Path, str | None]],
    options: FingerprintOptions,
    executor: ExecutorOptions | None,
    progress: object,
) -> Iterator[tuple[Fingerprint | None, str | None, float]]:
    """`(fingerprint or None, error or None, seconds)` for each model without a problem, in order."""
    todo = [model for model, problem in models if problem is None]
    if executor is not None and executor.kind != "local":
        from lineage.jobs.executors import gather

        gathered = gather([(None, m, None) for m in todo], lambda: options, None, _WeightsOnly(progress), executor)
        yield from ((o.fingerprint, o.error, o.seconds) for o in gathered)
        return
    for model in todo:
        start = time.perf_counter()
        try:
            fp, _ = obtain_fingerprint(model, options, progress=weights_hook(progress, model.name))
            yield fp, None, time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
            yield None, error_text(exc), time.perf_counter() - start


class _WeightsOnly:
    """A gather progress callback that forwards only the weight bytes (`on_model` counts the models)."""

    def __init__(self, progress: object) -> None:
        self.weights = getattr(progress, "weights", None)

    def __call__(self, done: int, total: int, name: str) -> None:
        pass
