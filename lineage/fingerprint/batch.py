"""Fingerprinting many models into files: one bad model is recorded and the batch goes on.

`fingerprint_paths` fingerprints every model of a command line (`lineage.fingerprint.inputs.expand_inputs`)
or takes it from the fingerprint cache, writes one file per model, and returns one outcome per model,
failed ones with their error text. Serially the models are fingerprinted one at a time as the files are
written; on an executor (`lineage.fingerprint.executors`: local worker processes, Ray) they are all gathered
first, then written in order. Models that share a name are told apart by their folders
(`lineage.io.names.unique_names`), so no file is written over another's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions, gather
from lineage.fingerprint.format import fingerprint_path, save_fingerprint
from lineage.fingerprint.gather import ModelOutcome, error_text, error_trace, iter_fingerprints
from lineage.fingerprint.paths import file_stem, keyed_stem
from lineage.fingerprint.pipeline import FingerprintOptions
from lineage.io.adapter_base import adapter_bases
from lineage.io.names import model_name, unique_names


def fingerprint_paths(
    models: Iterable[tuple[Path, str | None]],
    options: FingerprintOptions,
    out_dir: str | Path,
    on_model: Callable[[ModelOutcome], None] | None = None,
    executor: ExecutorOptions | None = None,
    progress: object = None,
    cache: FingerprintCache | None = None,
    keyed_files: bool = False,
    base: str | Path | None = None,
) -> list[ModelOutcome]:
    """Fingerprint every model and write `<out_dir>/<name>.fingerprint.safetensors`.

    Args:
        models: `lineage.fingerprint.inputs.expand_inputs(...)` of the paths given (model folders or folders
            of model folders).
        options: probe settings.
        out_dir: where the fingerprint files go.
        on_model: called after each model is written.
        executor: where to fingerprint (`lineage.fingerprint.executors`); one model after another when None.
        progress: an object with the `weights(name, done_bytes, total_bytes)` hook of
            `lineage.fingerprint.gather` (weight bytes streamed; models are counted by `on_model`).
        cache: the fingerprint cache (looked in first, filled after computing); None computes every model.
        keyed_files: name each file after the model's absolute path too (`<name>-<hash>`), so that two
            runs into one shared folder (the default one) never write over each other's files.
        base: the base model of LoRA adapter folders (`lineage.io.adapter_base`).

    Returns:
        One outcome per model, in order, with the `file` written; failures carry `error` and no fingerprint.
        Two models of one name (`org1/llama`, `org2/llama`) are named so and written as `org1__llama` and
        `org2__llama`.
    """
    models = list(models)
    names = unique_names([model_name(m) for m, _ in models], [m for m, _ in models])
    outcomes = []
    with adapter_bases(base):
        computed = _computed(models, options, executor, progress, cache)
        for (model, problem), name in zip(models, names):
            got = next(computed) if problem is None else ModelOutcome(name, model, None, None, problem, 0.0)
            outcome = _written(got, name, out_dir, keyed_files)
            outcomes.append(outcome)
            if on_model:
                on_model(outcome)
    return outcomes


def _written(got: ModelOutcome, name: str, out_dir: str | Path, keyed_files: bool) -> ModelOutcome:
    """`got` named `name`, its fingerprint written to its file (a write that fails fails the model)."""
    if got.fingerprint is None:
        return replace(got, name=name)
    start = time.perf_counter()
    try:
        fp = replace(got.fingerprint, name=name) if got.fingerprint.name != name else got.fingerprint
        stem = keyed_stem(name, got.path) if keyed_files else file_stem(name)
        file = save_fingerprint(fp, fingerprint_path(out_dir, stem))
        return replace(got, name=name, fingerprint=fp, file=file, seconds=got.seconds + time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
        seconds = got.seconds + time.perf_counter() - start
        return replace(got, name=name, fingerprint=None, how=None, error=error_text(exc), trace=error_trace(exc),
                       seconds=seconds)  # fmt: skip


def _computed(
    models: list[tuple[Path, str | None]],
    options: FingerprintOptions,
    executor: ExecutorOptions | None,
    progress: object,
    cache: FingerprintCache | None,
) -> Iterator[ModelOutcome]:
    """One outcome per model without a problem, in order: serially as each is done, else all gathered."""
    items = [(None, model, None) for model, problem in models if problem is None]
    if executor is not None and executor.kind != "local":
        yield from gather(items, lambda: options, cache, _WeightsOnly(progress), executor)
    else:
        yield from iter_fingerprints(items, lambda: options, cache, _WeightsOnly(progress))


class _WeightsOnly:
    """A gather progress callback that forwards only the weight bytes (`on_model` counts the models)."""

    def __init__(self, progress: object) -> None:
        self.weights = getattr(progress, "weights", None)

    def __call__(self, done: int, total: int, name: str) -> None:
        pass
