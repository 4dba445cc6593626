"""The fingerprint cache: fingerprint a model once, load it ever after.

Entries are ordinary fingerprint files named by `lineage.fingerprint.pipeline.cache_key` (a hash of the model's
headers, file sizes and times, the probe settings and the lineage version), so a second scan with
nothing changed fingerprints nothing, and any change to the model or the settings misses the cache
instead of returning a stale answer. The key only needs the headers, so computing it costs a few
reads, not a pass over the weights. Writes are atomic (`save_fingerprint` writes a uniquely named
temporary file in the same folder, then renames it over the entry), so scans and workers sharing one cache
never see, or leave, a half-written entry; a corrupt entry counts as a miss and is overwritten: a cache
must never be the reason a scan fails.

Default folder: `$LINEAGE_CACHE`, else `~/.cache/lineage` (see `lineage.fingerprint.paths.default_cache_dir`).

`gather_fingerprints` obtains many fingerprints this way (fingerprint files are simply loaded) and turns
each model's failure into an outcome carrying its error text, so that callers never abort a batch. It runs
one model after another; `lineage.jobs.executors` runs the same work on local worker processes or a Ray
cluster, with `resolve_without_compute` as the driver's cheap first pass (files, cache hits, bad paths).

Progress: a caller's `progress(done, total, name)` is called after each model. When the object also has
`finished(outcome)` it is told how each model went (cached, failed...), and with `weights(name, done,
total)` it is told the weight bytes streamed so far inside the model being fingerprinted (a 70B model is
minutes of work: it must not look stuck).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.errors import CheckpointError, FingerprintFormatError, LineageError
from lineage.fingerprint.format import (
    FINGERPRINT_SUFFIX,
    Fingerprint,
    is_fingerprint_file,
    load_fingerprint,
    save_fingerprint,
)
from lineage.fingerprint.paths import default_cache_dir
from lineage.io.hub import is_hub_path
from lineage.io.names import model_name

#: `weights(done_bytes, total_bytes)` while one model's weights stream (see `fingerprint_model`).
WeightProgress = Callable[[int, int], None]

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

#: How a fingerprint was obtained: read from a fingerprint file, found in the cache, or computed.
LOADED, CACHED, FINGERPRINTED = "loaded", "cached", "fingerprinted"
_ENTRIES = "by-key"


class FingerprintCache:
    """Fingerprint files in a folder, addressed by cache key.

    Args:
        folder: the cache folder (created on first write); the default folder when None.

    Example:
        >>> cache = FingerprintCache("/tmp/lineage-cache")
        >>> cache.get("0" * 64) is None
        True
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path_for(self, key: str) -> Path:
        """Where the entry for `key` lives (two-level fan-out keeps folders small on big scans)."""
        if len(key) < 3 or not key.isalnum():
            raise ValueError(f"not a cache key: {key!r}")
        return self.folder / _ENTRIES / key[:2] / f"{key}{FINGERPRINT_SUFFIX}"

    def get(self, key: str) -> Fingerprint | None:
        """The cached fingerprint for `key`, or None (absent or unreadable)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return load_fingerprint(path)
        except FingerprintFormatError:
            return None  # corrupt or of an older schema: recompute and overwrite

    def put(self, key: str, fp: Fingerprint) -> Path:
        """Store `fp` under `key`; returns the file written."""
        return save_fingerprint(fp, self.path_for(key))

    def __len__(self) -> int:
        root = self.folder / _ENTRIES
        return sum(1 for _ in root.glob(f"*/*{FINGERPRINT_SUFFIX}")) if root.is_dir() else 0


def obtain_fingerprint(
    path: str | Path,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
    progress: WeightProgress | None = None,
) -> tuple[Fingerprint, str]:
    """The fingerprint of one model: loaded from a fingerprint file, from the cache, or computed.

    Args:
        path: a fingerprint file, one model folder, or one `.safetensors` weights file.
        options: probe settings for folders (defaults when None).
        cache: where to look first and store after computing; None computes every time.
        name: the name to give the fingerprint (a manifest's row name); the file's or folder's when None.
        progress: called as `progress(done_bytes, total_bytes)` while the weights stream (when computed).

    Returns:
        `(fingerprint, how)` with `how` one of LOADED, CACHED, FINGERPRINTED.

    Raises:
        LineageError: the path is missing, not a model, or the model cannot be fingerprinted.
    """
    if is_hub_path(path):  # hf://org/name[@revision]: keyed by commit, fetched on a miss
        from lineage.fingerprint.hub import obtain_hub_fingerprint

        return obtain_hub_fingerprint(path, options, cache, name, progress)
    found = resolve_without_compute(path, options, cache, name)
    if found is not None:
        return found
    from lineage.fingerprint.pipeline import FingerprintOptions, cache_key, fingerprint_model

    options = options or FingerprintOptions()
    # The key reads the headers, so a broken checkpoint fails here with the reader's own message.
    key = cache_key(path, options) if cache is not None else None
    fp = fingerprint_model(path, options, progress=progress)
    if key is not None:
        cache.put(key, fp)
    return _named(fp, FINGERPRINTED, path, name), FINGERPRINTED


def resolve_without_compute(
    path: str | Path,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
) -> tuple[Fingerprint, str] | None:
    """The fingerprint of one model when it costs no probing: a fingerprint file, or a cache hit.

    Args:
        path, options, cache, name: as for `obtain_fingerprint`.

    Returns:
        `(fingerprint, LOADED or CACHED)`, or None when the model must be fingerprinted.

    Raises:
        LineageError: the path is missing, or its headers are unreadable (the cache key reads them).
    """
    if is_hub_path(path):
        from lineage.fingerprint.hub import cached_hub_fingerprint

        return cached_hub_fingerprint(path, options, cache, name)
    path = Path(path)
    if is_fingerprint_file(path):
        return _named(load_fingerprint(path), LOADED, path, name), LOADED
    if not path.exists():
        raise CheckpointError(path, "no such file or folder; check the path (manifest paths are relative to it)")
    if cache is None:
        return None
    from lineage.fingerprint.pipeline import FingerprintOptions, cache_key

    fp = cache.get(cache_key(path, options or FingerprintOptions()))
    return None if fp is None else (_named(fp, CACHED, path, name), CACHED)


def _named(fp: Fingerprint, how: str, path: Path | str, name: str | None) -> Fingerprint:
    if name is None and how == CACHED:
        # The cache is content-addressed: a copy of a model elsewhere (cp -a, rsync) hits the entry another
        # folder made, whose name is not this one's. The name follows the one rule of `lineage.io.names`.
        name = model_name(path)
    if name is not None and fp.name != name:
        fp = replace(fp, name=name)  # the cache is content-addressed: the same model may sit under another name
    return fp


def expand_inputs(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """The models named on a command line, as `(path, None)`, or `(path, error)` for a path holding none.

    A path is a fingerprint file, a model folder, a folder of model folders (`discover_models`), or a
    folder of fingerprint files (what `lineage fingerprint --out` writes).
    """
    from lineage.io import discover_models

    found: list[tuple[Path, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if is_hub_path(path):  # fetched when fingerprinted
            found.append((path, None))
            continue
        if is_fingerprint_file(path):
            found.append((path, None))
            continue
        try:
            found.extend((model, None) for model in discover_models(path))
        except LineageError as exc:
            files = sorted(p for p in path.iterdir() if is_fingerprint_file(p)) if path.is_dir() else []
            if files:
                found.extend((f, None) for f in files)
            else:
                found.append((path, str(exc)))
    return found


@dataclass(frozen=True)
class ModelOutcome:
    """How one model went: its fingerprint and how it was obtained (LOADED, CACHED, FINGERPRINTED), or its
    error text. `key` is the caller's handle on it (a manifest row, a command-line path); `attempts` counts
    the workers it took (more than 1 when a worker died under it and it was retried); `trace` is the
    traceback of a failure that was not one of lineage's own errors (shown with `LINEAGE_DEBUG=1`)."""

    name: str
    path: Path
    fingerprint: Fingerprint | None
    how: str | None
    error: str | None
    seconds: float
    key: object = None
    attempts: int = 1
    trace: str | None = None

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
        probe_options: returns the probe settings; called only when a model folder must be fingerprinted,
            so loading fingerprint files never imports the probing stack.
        cache: the fingerprint cache, or None.
        progress: called as `progress(done, total, name)` after each model (see the module docstring for
            its optional `finished` and `weights` hooks).

    Returns:
        One outcome per item, in order.
    """
    outcomes: list[ModelOutcome] = []
    options: FingerprintOptions | None = None
    for name, path, key in items:
        t0 = time.perf_counter()
        label = name or model_name(path)
        try:
            if options is None and (Path(path).exists() or is_hub_path(path)) and not is_fingerprint_file(path):
                options = probe_options()  # first model folder: only now import the probing stack
            fp, how = obtain_fingerprint(path, options, cache, name=name, progress=weights_hook(progress, label))
            outcome = ModelOutcome(fp.name, Path(path), fp, how, None, time.perf_counter() - t0, key)
        except Exception as exc:  # noqa: BLE001 - one bad model must never abort a scan of thousands
            outcome = ModelOutcome(
                label, Path(path), None, None, error_text(exc), time.perf_counter() - t0, key, trace=error_trace(exc)
            )
        outcomes.append(outcome)
        report_outcome(progress, len(outcomes), len(items), outcome)
    return outcomes


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
