"""Many models' fingerprints, one after another: a model that fails is an outcome carrying its error text,
never an exception, so that callers never abort a batch.

`gather_fingerprints` is the serial loop; `lineage.fingerprint.executors` runs the same work on local worker
processes or a Ray cluster and gives the same outcomes, in the same order.

Progress: a caller's `progress(done, total, name)` is called after each model. When the object also has
`finished(outcome)` it is told how each model went (cached, failed...), and with `weights(name, done,
total)` it is told the weight bytes streamed so far inside the model being fingerprinted (a 70B model is
minutes of work: it must not look stuck).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.errors import LineageError
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import Fingerprint
from lineage.fingerprint.obtain import WeightProgress, needs_probing, obtain_fingerprint
from lineage.io.names import model_name

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions


@dataclass(frozen=True)
class ModelOutcome:
    """How one model went: its fingerprint and how it was obtained (LOADED, CACHED, FINGERPRINTED), or its
    error text. `key` is the caller's handle on it (a manifest row, a command-line path); `attempts` counts
    the workers it took (more than 1 when a worker died under it and it was retried); `trace` is the
    traceback of a failure that was not one of lineage's own errors (shown with `LINEAGE_DEBUG=1`); `file`
    is the fingerprint file a batch wrote for it (`lineage.fingerprint.batch`)."""

    name: str
    path: Path
    fingerprint: Fingerprint | None
    how: str | None
    error: str | None
    seconds: float
    key: object = None
    attempts: int = 1
    trace: str | None = None
    file: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def gather_fingerprints(
    items: Sequence[tuple[str | None, Path, object]],
    probe_options: Callable[[], FingerprintOptions],
    cache: FingerprintCache | None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ModelOutcome]:
    """Obtain many fingerprints, one after another; a model that fails becomes an outcome with its error,
    never an exception.

    Args:
        items: `(name or None, path, key)` per model; None keeps the fingerprint's own name.
        probe_options: returns the probe settings; called only when a model must be fingerprinted, so
            loading fingerprint files never imports the probing stack.
        cache: the fingerprint cache, or None.
        progress: called as `progress(done, total, name)` after each model (see the module docstring for
            its optional `finished` and `weights` hooks).

    Returns:
        One outcome per item, in order.
    """
    return list(iter_fingerprints(items, probe_options, cache, progress))


def iter_fingerprints(
    items: Sequence[tuple[str | None, Path, object]],
    probe_options: Callable[[], FingerprintOptions],
    cache: FingerprintCache | None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Iterator[ModelOutcome]:
    """`gather_fingerprints`, one outcome at a time as each model is done (a batch writes each file then)."""
    options: FingerprintOptions | None = None
    for done, (name, path, key) in enumerate(items, start=1):
        t0 = time.perf_counter()
        label = name or model_name(path)
        try:
            if options is None and needs_probing(path):
                options = probe_options()  # first model to fingerprint: only now import the probing stack
            fp, how = obtain_fingerprint(path, options, cache, name=name, progress=weights_hook(progress, label))
            outcome = ModelOutcome(fp.name, Path(path), fp, how, None, time.perf_counter() - t0, key)
        except Exception as exc:  # noqa: BLE001 - one bad model must never abort a scan of thousands
            outcome = ModelOutcome(
                label, Path(path), None, None, error_text(exc), time.perf_counter() - t0, key, trace=error_trace(exc)
            )
        report_outcome(progress, done, len(items), outcome)
        yield outcome


def report_outcome(
    progress: Callable[[int, int, str], None] | None, done: int, total: int, outcome: ModelOutcome
) -> None:
    """Tell `progress` that `outcome` is in (its `finished` hook first, then the `(done, total, name)` tick)."""
    if progress is None:
        return
    finished = getattr(progress, "finished", None)
    if finished is not None:
        finished(outcome)
    progress(done, total, outcome.name)


def weights_hook(progress: object, name: str) -> WeightProgress | None:
    """`progress.weights` bound to one model's name, or None when `progress` has no such hook."""
    weights = getattr(progress, "weights", None)
    if weights is None:
        return None
    return lambda done, total: weights(name, done, total)


def error_trace(exc: BaseException) -> str:
    """The full traceback of `exc`, as text (what `LINEAGE_DEBUG=1` shows for a model failing in a batch)."""
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")


def error_text(exc: Exception) -> str:
    """One line for a model that failed: ours as they are, anything else with its type (the clue to a bug)."""
    if isinstance(exc, LineageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
