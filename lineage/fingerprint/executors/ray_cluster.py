"""The `ray` executor: one Ray Core task per model, on a local or remote Ray cluster.

Each task looks in the content-addressed cache, fingerprints when it must, stores the result in the cache
(atomically) and returns it as fingerprint file bytes; the driver keeps the order, fills its own cache
and classifies. A task whose worker dies is rerun by Ray (`max_retries`); an error in the model is not
(it would fail again). When the cluster has GPUs each task asks for one, so fingerprinting lands on GPU
workers (probes run on CUDA there with the default device "auto"). On a remote cluster, lineage must be
installed on the workers and model paths must be readable there (a shared file system). Each task asks Ray
for `threads` CPUs (one when unset) and runs that many torch and BLAS threads, with the passive OpenMP wait
policy (`lineage.fingerprint.threads`): Ray never places more threads on a node than it has CPUs. Ray is an
optional extra: `pip install 'lineage[ray]'`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.errors import ExecutorError
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors.tasks import Plan, Task, TaskResult, run_task
from lineage.fingerprint.gather import ModelOutcome, error_text
from lineage.fingerprint.threads import worker_environment

if TYPE_CHECKING:
    from lineage.fingerprint.executors.options import ExecutorOptions
    from lineage.fingerprint.pipeline import FingerprintOptions

INSTALL_HINT = "the ray executor needs Ray: pip install 'lineage[ray]' (or pip install 'ray>=2.9')"


def gather_on_ray(
    items: Sequence[tuple[str | None, Path, object]],
    probe_options: Callable[[], FingerprintOptions],
    cache: FingerprintCache | None,
    progress: Callable[[int, int, str], None] | None,
    executor: ExecutorOptions,
) -> list[ModelOutcome]:
    """`lineage.fingerprint.executors.gather` on a Ray cluster (see the module docstring).

    Joins `executor.ray_address`, or starts a local cluster, unless the caller already called `ray.init`
    (then that cluster is used and left running).

    Raises:
        ExecutorError: Ray is not installed or the cluster cannot be joined.
    """
    try:
        import ray
    except ImportError:
        raise ExecutorError(INSTALL_HINT) from None
    plan = Plan(items, probe_options, cache, progress, executor.threads)
    if not plan.tasks:
        return plan.result()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=executor.ray_address, include_dashboard=False, logging_level="warning")
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean "no cluster"
            where = executor.ray_address or "a local cluster"
            raise ExecutorError(f"cannot start or join Ray ({where}): {error_text(exc)}") from exc
    try:
        wants_gpu = ray.cluster_resources().get("GPU", 0) > 0 and plan.tasks[0].options.device != "cpu"
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
        remote = ray.remote(_ray_task).options(**task_options(executor, wants_gpu, int(largest)))
        pending: deque[Task] = deque(plan.tasks)
        in_flight: dict = {}
        # Twice the cluster's slots in flight keeps every worker busy without holding a million task
        # references (and their results in the object store) at once.
        slots = ray.cluster_resources().get("GPU" if wants_gpu else "CPU", 1)
        limit = executor.jobs or max(2, 2 * int(slots))
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                task = pending.popleft()
                in_flight[remote.remote(task)] = task
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                task = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - retries spent (worker kept dying) or the task was lost
                    result = TaskResult(task.index, None, f"ray task failed: {error_text(exc)}", 0.0)
                plan.finish(result)
    finally:
        if started:
            ray.shutdown()
    return plan.result()


def task_options(executor: ExecutorOptions, gpu: bool, node_cpus: int) -> dict:
    """The Ray options of each task: a GPU when `gpu`, and as many CPUs as its threads (one when the executor
    does not say): Ray places a task on the CPUs it asks for, so its threads use no more. No more than
    `node_cpus` (the largest node's): a task that asks for more than any node has would wait forever."""
    cpus = max(1, min(executor.threads or 1, node_cpus))
    return {
        "num_cpus": cpus,
        "num_gpus": 1 if gpu else 0,
        "max_retries": executor.retries,
        "retry_exceptions": False,
        "runtime_env": {"env_vars": worker_environment(cpus)},
    }


def _ray_task(task: Task) -> TaskResult:
    """The body of one Ray task (a module-level function: Ray ships it by reference), on as many threads as
    the CPUs Ray gave it (`num_cpus`) unless the task says how many."""
    if task.threads is None:
        task = replace(task, threads=_assigned_cpus())
    return run_task(task)


def _assigned_cpus() -> int:
    """The CPUs Ray assigned to the running task (whole ones, at least one)."""
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
