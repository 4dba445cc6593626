"""Where and how widely to fingerprint: the `--executor` options, as one frozen object."""

from __future__ import annotations

from dataclasses import dataclass

#: The executors, by the name `--executor` takes.
EXECUTORS: tuple[str, ...] = ("local", "process", "ray")


@dataclass(frozen=True)
class ExecutorOptions:
    """Where and how widely to fingerprint.

    Attributes:
        kind: "local", "process" or "ray".
        jobs: models fingerprinted at once: worker processes for `process` (the threads this process may
            run when None: `lineage.fingerprint.threads.Cores`), tasks in flight for `ray` (twice the
            cluster's GPUs, or CPUs, when None); ignored by `local`.
        ray_address: the Ray cluster to join (`ray://host:10001`, `auto`); None starts a local one, unless the
            caller has already called `ray.init`.
        retries: times a model is retried when its worker dies under it (not when it fails with an error:
            a corrupt checkpoint fails the same way every time).
        threads: torch and BLAS threads per worker: when None, for `process` each worker's share of the
            threads this process may run (affinity, cgroup quota, `OMP_NUM_THREADS`, divided by `jobs`), for
            `ray` the CPUs each task asks Ray for (one). Float32 sums split over another number of threads
            round differently in the last bits (relative 1e-6), so only equal threads give bit-identical
            fingerprints to a serial run; the verdicts do not move.
    """

    kind: str = "local"
    jobs: int | None = None
    ray_address: str | None = None
    retries: int = 2
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {self.kind!r}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1")
        if self.ray_address is not None and self.kind != "ray":
            raise ValueError("ray_address needs the ray executor")
