"""Fingerprinting many models: one bad model is recorded and the batch goes on.

`fingerprint_paths` expands each path (a model folder or a folder of model folders), fingerprints every
model, writes one file per model, and returns one outcome per model, failed ones with their error text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from lineage.fingerprint.cache import error_text
from lineage.fingerprint.format import Fingerprint, fingerprint_path, save_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model


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
) -> list[FingerprintOutcome]:
    """Fingerprint every model and write `<out_dir>/<name>.fingerprint.safetensors`.

    Args:
        models: `lineage.fingerprint.cache.expand_inputs(...)` of the paths given (model folders or folders
            of model folders).
        options: probe settings.
        out_dir: where the fingerprint files go.
        on_model: called after each model (for progress bars).

    Returns:
        One outcome per model, in order; failures carry `error` and no fingerprint. Two models of one name
        (`org1/llama`, `org2/llama`) are written as `llama` and `org2__llama`, never over each other.
    """
    outcomes, used = [], set()
    for model, problem in models:
        start = time.perf_counter()
        fp = file = None
        if problem is None:
            try:
                fp = fingerprint_model(model, options)
                if fp.name in used:
                    fp = replace(fp, name=f"{model.parent.name}__{fp.name}")
                used.add(fp.name)
                file = save_fingerprint(fp, fingerprint_path(out_dir, fp.name))
            except Exception as exc:  # noqa: BLE001 - one bad model must never abort a batch
                fp, problem = None, error_text(exc)
        name = fp.name if fp else model.name
        outcome = FingerprintOutcome(model, name, fp, file, time.perf_counter() - start, problem)
        outcomes.append(outcome)
        if on_model:
            on_model(outcome)
    return outcomes
