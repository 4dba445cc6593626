"""Fingerprinting many models: one bad model is recorded and the batch goes on.

`fingerprint_paths` expands each path (a model folder or a folder of model folders), fingerprints every
model (or takes it from the fingerprint cache), writes one file per model, and returns one outcome per
model, failed ones with their error text. Serially the models are fingerprinted one at a time as the files
are written; on an executor (`lineage.jobs.executors`: local worker processes, Ray) they are all gathered
first, then written in order. Models that share a name are told apart by their folders
(`lineage.io.names.unique_names`), so no file is written over another's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.fingerprint.cache import (
    FingerprintCache,
    error_text,
    error_trace,
    obtain_fingerprint,
    weights_hook,
)
from lineage.fingerprint.format import Fingerprint, fingerprint_path, save_fingerprint
from lineage.fingerprint.paths import file_stem, keyed_stem
from lineage.fingerprint.pipeline import FingerprintOptions
from lineage.io.names import model_name, unique_names

if TYPE_CHECKING:
    from lineage.jobs.executors import ExecutorOptions


@dataclass(frozen=True)
class FingerprintOutcome:
    """One model's result in a batch: a fingerprint and its file, or an error.

    Attributes:
        how: `cached` or `fingerprinted` (`lineage.fingerprint.cache`), None for a failure.
        trace: a failure's traceback, as text (shown with `LINEAGE_DEBUG=1`).
    """

    path: Path
    name: str
    fingerprint: Fingerprint | None
    file: Path | None
    seconds: float
    error: str | None = None
    how: str | None = None
    trace: str | None = None

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
    cache: FingerprintCache | None = None,
    keyed_files: bool = False,
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
        cache: the fingerprint cache (looked in first, filled after computing); None computes every model.
        keyed_files: name each file after the model's absolute path too (`<name>-<hash>`), so that two
            runs into one shared folder (the default one) never write over each other's files.

    Returns:
        One outcome per model, in order; failures carry `error` and no fingerprint. Two models of one name
        (`org1/llama`, `org2/llama`) are named so and written as `org1__llama` and `org2__llama`.
    """
    models = list(models)
    names = unique_names([model_name(m) for m, _ in models], [m for m, _ in models])
    computed = _computed(models, options, executor, progress, cache)
    outcomes = []
    for (model, problem), name in zip(models, names):
        fp = file = how = trace = None
        seconds = 0.0
        if problem is None:
            fp, how, problem, trace, seconds = next(computed)
        start = time.perf_counter()
        if fp is not None:
            try:
                fp = replace(fp, name=name) if fp.name != name else fp
                stem = keyed_stem(name, model) if keyed_files else file_stem(name)
                file = save_fingerprint(fp, fingerprint_path(out_dir, stem))
            except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
                fp, how, problem, trace = None, None, error_text(exc), error_trace(exc)
        seconds += time.perf_counter() - start
        outcome = FingerprintOutcome(model, name, fp, file, seconds, problem, how, trace)
        outcomes.append(outcome)
        if on_model:
            on_model(outcome)
    return outcomes


def _computed(
    models: list[tuple[Path, str | None]],
    options: FingerprintOptions,
    executor: ExecutorOptions | None,
    progress: object,
    cache: FingerprintCache | None,
) -> Iterator[tuple[Fingerprint | None, str | None, str | None, str | None, float]]:
    """`(fingerprint, how, error, trace, seconds)` for each model without a problem, in order."""
    todo = [model for model, problem in models if problem is None]
    if executor is not None and executor.kind != "local":
        from lineage.jobs.executors import gather

        gathered = gather([(None, m, None) for m in todo], lambda: options, cache, _WeightsOnly(progress), executor)
        yield from ((o.fingerprint, o.how, o.error, o.trace, o.seconds) for o in gathered)
        return
    for model in todo:
        start = time.perf_counter()
        try:
            fp, how = obtain_fingerprint(model, options, cache, progress=weights_hook(progress, model_name(model)))
            yield fp, how, None, None, time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
            yield None, None, error_text(exc), error_trace(exc), time.perf_counter() - start


class _WeightsOnly:
    """A gather progress callback that forwards only the weight bytes (`on_model` counts the models)."""

    def __init__(self, progress: object) -> None:
        self.weights = getattr(progress, "weights", None)

    def __call__(self, done: int, total: int, name: str) -> None:
        pass
