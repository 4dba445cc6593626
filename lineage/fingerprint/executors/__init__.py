"""Where fingerprinting runs: in this process, on local worker processes, or on a Ray cluster.

Every executor does one thing: given `(name, path, key)` items, return one `ModelOutcome` per item, in
input order, exactly as `lineage.fingerprint.gather.gather_fingerprints` (the serial loop) would. The
driver first settles what costs no probing (fingerprint files, cache hits, missing paths: see
`lineage.fingerprint.obtain.locate`), so a driver restarted after a crash redoes only the models it had not
finished, and only the rest goes to workers. Workers write what they compute to the content-addressed
cache (atomically: `save_fingerprint`) and send the fingerprint back as a fingerprint file's bytes, so no
fingerprint is ever unpickled and the driver needs no file system shared with the workers.

- `local`: today's serial loop.
- `process`: N worker processes on this machine (spawned, with the cores this process may use split
  between them so N workers do not oversubscribe them: `lineage.fingerprint.threads`). A worker that dies
  (killed, out of memory) costs its model one retry and nothing else: the other workers keep their models.
- `ray`: one Ray task per model (`num_gpus=1` when the cluster has GPUs; `num_cpus` its threads), retried
  by Ray when its worker dies. Ray is an optional extra: `pip install 'lineage[ray]'`.

Example:
    >>> opts = ExecutorOptions(kind="process", jobs=2)
    >>> opts.kind, opts.jobs
    ('process', 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors.options import EXECUTORS, ExecutorOptions
from lineage.fingerprint.gather import ModelOutcome, gather_fingerprints

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

__all__ = ["EXECUTORS", "ExecutorOptions", "gather"]

def gather(
    items: Sequence[tuple[str | None, Path, object]],
    probe_options: Callable[[], FingerprintOptions],
    cache: FingerprintCache | None,
    progress: Callable[[int, int, str], None] | None = None,
    executor: ExecutorOptions | None = None,
) -> list[ModelOutcome]:
    """Obtain many fingerprints on the executor asked for; a model that fails is an outcome, never an exception.

    Args:
        items: `(name or None, path, key)` per model; None keeps the fingerprint's own name.
        probe_options: returns the probe settings (called only when a model folder must be fingerprinted).
        cache: the fingerprint cache, or None.
        progress: `progress(done, total, name)` after each model, with the optional `finished` and `weights`
            hooks of `lineage.fingerprint.gather`.
        executor: where to run; the serial loop when None.

    Returns:
        One outcome per item, in input order, the same as the serial loop's.

    Raises:
        ExecutorError: the executor cannot start (Ray not installed, cluster unreachable).
    """
    executor = executor or ExecutorOptions()
    if executor.kind == "local" or not items:
        return gather_fingerprints(items, probe_options, cache, progress)
    if executor.kind == "process":
        from lineage.fingerprint.executors.process import gather_in_processes

        return gather_in_processes(items, probe_options, cache, progress, executor)
    from lineage.fingerprint.executors.ray_cluster import gather_on_ray

    return gather_on_ray(items, probe_options, cache, progress, executor)
