"""How many threads a fingerprinting process runs, and how its waiting threads wait.

The products that make a fingerprint run in torch's intra-op pool (OpenMP, with MKL inside it) and, for a
few statistics, in the BLAS numpy loaded (OpenBLAS). Left to themselves, both go wrong on a shared machine:

- **They count the CPUs they see, not the cores this process may use**, which are fewer than
  `os.cpu_count()` when its CPU affinity is narrower (`taskset`, a container's cpuset) or a cgroup caps its
  CPU time (`docker --cpus`, Kubernetes limits: cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` /
  `cpu.cfs_period_us`). A pool larger than the quota is throttled in
  the middle of its parallel regions, and every region waits for its slowest thread. `Cores.detect` reads
  all three; `OMP_NUM_THREADS` (or `MKL_NUM_THREADS`), when the user set it, is the count instead, and the
  `--threads` option of the commands sets it.
- **Waiting threads spin.** GNU OpenMP (torch's runtime on Linux: `torch.__config__.parallel_info()`) lets
  a thread that reaches the end of a parallel region busy-wait for the next one. Beside another job those
  spinning threads take the cores the working ones need: on 2 shared cores beside a 2-thread matrix
  product loop, a fingerprint took several times longer with the default wait than with
  `OMP_WAIT_POLICY=PASSIVE` (threads sleep at once); `bench/bench_fingerprint.py --contrast` prints both,
  quiet and beside the loop. OpenMP reads the variable once, when torch's runtime loads, so
  `prepare_process` sets it before torch is imported, unless the user set it (GNU and LLVM/Intel OpenMP
  both honour it; a user's `GOMP_SPINCOUNT` or `KMP_BLOCKTIME` still wins over it in its runtime).

The process executor divides the count among its workers (`Cores.per_worker`), and each worker starts
with its share in its environment (`worker_environment`), so its pools are that size from the moment they
are created, then checks them (`limit_threads`). Float32 sums split over another number of threads round
differently in their last bits (relative 1e-6): the count never changes a verdict, and equal counts give
bit-identical fingerprints.

Example:
    >>> Cores(affinity=8, quota=2.5, requested=None).threads
    2
    >>> Cores(affinity=8, quota=None, requested=None).per_worker(3)
    2
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Set for the user when unset: threads waiting at the end of a parallel region sleep instead of spinning.
WAIT_POLICY = ("OMP_WAIT_POLICY", "PASSIVE")
#: The variables a user sets to fix the thread count, in the order they are read.
COUNT_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: The pools a worker's environment sizes before they exist: OpenMP (torch), MKL, and numpy's OpenBLAS.
POOL_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Cores:
    """The cores a process may use, and where that count comes from.

    Attributes:
        affinity: CPUs in the process's affinity mask (`os.sched_getaffinity`).
        quota: the cgroup CPU quota in cores (quota / period, the smallest along the cgroup's path); None
            when there is none.
        requested: the count the user asked for (`OMP_NUM_THREADS`, `MKL_NUM_THREADS`, `--threads`); None
            when none was.
    """

    affinity: int
    quota: float | None = None
    requested: int | None = None

    def __post_init__(self) -> None:
        if self.affinity < 1:
            raise ValueError("affinity must be >= 1")
        if self.quota is not None and not self.quota > 0:
            raise ValueError("quota must be > 0")
        if self.requested is not None and self.requested < 1:
            raise ValueError("requested must be >= 1")

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Cores:
        """This process's cores: affinity, cgroup quota, and the count the environment asks for."""
        return cls(affinity_cores(), cgroup_quota(), requested_threads(os.environ if environ is None else environ))

    @property
    def usable(self) -> int:
        """The cores this process may keep busy: its affinity, capped by the quota (whole cores, at least one:
        a pool of 2 threads under a quota of 1.5 cores is throttled in every parallel region)."""
        if self.quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.floor(self.quota + 1e-9)))

    @property
    def threads(self) -> int:
        """The threads of one process: what the user asked for, else the usable cores."""
        return self.requested or self.usable

    def per_worker(self, workers: int) -> int:
        """Each of `workers` processes' share of `threads` (at least one thread each)."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        return max(1, self.threads // workers)

    def describe(self) -> str:
        """One line saying how the count was chosen (the benches print it)."""
        quota = "no cgroup quota" if self.quota is None else f"cgroup quota {self.quota:g} cores"
        asked = f"; asked for {self.requested} (OMP_NUM_THREADS / --threads)" if self.requested else ""
        return f"{self.threads} threads: affinity {self.affinity} CPUs, {quota}{asked}"


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask; `os.cpu_count()` where there is no such call)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def requested_threads(environ: Mapping[str, str]) -> int | None:
    """The count `OMP_NUM_THREADS` (else `MKL_NUM_THREADS`) asks for; None when unset or not a count.

    OpenMP takes a list for nested levels (`4,2`): the first is this process's pool. A value that is no
    positive integer is ignored, as OpenMP ignores it.
    """
    for name in COUNT_VARIABLES:
        value = environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return None


def cgroup_quota(proc: Path = Path("/proc/self"), root: Path = Path("/")) -> float | None:
    """The CPU quota of this process's cgroup, in cores; None when there is none (or no cgroup file system).

    Reads `/proc/self/cgroup` for the process's cgroup, `/proc/self/mountinfo` for where each hierarchy is
    mounted, then the quota of that cgroup and of each cgroup above it up to the mount (a parent's limit
    binds its children too): v2 `cpu.max` ("max 100000" or "150000 100000"), v1 `cpu.cfs_quota_us` (-1:
    none) over `cpu.cfs_period_us`. The smallest wins.

    Args:
        proc: the `/proc/<pid>` folder to read (tests give a fake one).
        root: where the mount points of `mountinfo` are (tests give a fake tree).
    """
    try:
        groups = (proc / "cgroup").read_text().splitlines()
        mounts = (proc / "mountinfo").read_text().splitlines()
    except OSError:
        return None
    paths_v1, path_v2 = {}, None
    for line in groups:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            path_v2 = parts[2]
        for controller in parts[1].split(","):
            paths_v1[controller] = parts[2]
    quotas = []
    for line in mounts:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount_root, mount_point, fs_type, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if fs_type == "cgroup2" and path_v2 is not None:
            folder = _cgroup_folder(root, mount_point, mount_root, path_v2)
            quotas += [q for f in _up_to(folder, root / mount_point.lstrip("/")) if (q := _quota_v2(f)) is not None]
        elif fs_type == "cgroup" and "cpu" in options and "cpu" in paths_v1:
            folder = _cgroup_folder(root, mount_point, mount_root, paths_v1["cpu"])
            quotas += [q for f in _up_to(folder, root / mount_point.lstrip("/")) if (q := _quota_v1(f)) is not None]
    return min(quotas) if quotas else None


def _cgroup_folder(root: Path, mount_point: str, mount_root: str, path: str) -> Path:
    """The folder of cgroup `path` under a mount of the hierarchy's `mount_root` (a container sees its own
    cgroup as the mount's root, or, with a cgroup namespace, as `/`)."""
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root.rstrip("/") + "/")):
        path = path[len(mount_root) :]
    return root / mount_point.lstrip("/") / path.lstrip("/")


def _up_to(folder: Path, top: Path) -> list[Path]:
    """`folder` and each folder above it, up to and including `top` (only `top` when `folder` is not under it)."""
    try:
        rel = folder.relative_to(top)
    except ValueError:
        return [top]
    out = [top]
    for part in rel.parts:
        out.append(out[-1] / part)
    return out


def _quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _ratio(quota, period)


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def prepare_process(threads: int | None = None) -> Cores:
    """Size this process's pools before they exist (call it before torch is imported), and those that do.

    Sets the wait policy unless the user set one; with `threads`, sets `OMP_NUM_THREADS` and `MKL_NUM_THREADS`
    to it (the `--threads` option means exactly that); without, and when a cgroup quota caps the cores
    below the affinity (which OpenMP alone would take), writes the capped count there, so torch's pool, MKL
    and a BLAS loaded later start at that size. Pools already loaded (torch, numpy's BLAS) are resized.

    Args:
        threads: the threads asked for (`--threads`); None: the environment's, else the usable cores.

    Returns:
        The cores, as the processes this one starts will see them.
    """
    if threads is not None and threads < 1:
        raise ValueError("threads must be >= 1")
    os.environ.setdefault(*WAIT_POLICY)
    if threads is not None:
        for name in COUNT_VARIABLES:
            os.environ[name] = str(threads)
    cores = Cores.detect()
    if cores.requested is None and cores.usable != cores.affinity:  # OpenMP alone would take the affinity
        for name in COUNT_VARIABLES:
            os.environ[name] = str(cores.usable)
    limit_threads(cores.threads, import_torch=False)
    return cores


def worker_environment(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a worker process of `threads` threads starts with: every pool sized to its share, and
    the wait policy unless `environ` (the driver's, by default) already has one."""
    environ = os.environ if environ is None else environ
    out = {name: str(threads) for name in POOL_VARIABLES}
    if WAIT_POLICY[0] not in environ:
        out[WAIT_POLICY[0]] = WAIT_POLICY[1]
    return out


def limit_threads(threads: int, import_torch: bool = True) -> None:
    """Size torch's intra-op pool (OpenMP and MKL) and every BLAS loaded (numpy's OpenBLAS) to `threads`.

    Args:
        threads: the pool size.
        import_torch: import torch to size it; when False, torch is sized only if already imported (its
            pool then starts at `OMP_NUM_THREADS` when it is).
    """
    if threads < 1:
        raise ValueError("threads must be >= 1")
    if import_torch or "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")  # not as a context: the limit stays


def pool_sizes() -> dict[str, object]:
    """This process's pools as they are: torch's threads, each loaded BLAS's (by library), the wait policy.

    Workers return it with each result, so a test or a bench can see what a worker ran on.

    Example:
        >>> {"OMP_WAIT_POLICY", "torch"} <= set(pool_sizes())
        True
    """
    import torch
    from threadpoolctl import threadpool_info

    sizes: dict[str, object] = {"OMP_WAIT_POLICY": os.environ.get(WAIT_POLICY[0]), "torch": torch.get_num_threads()}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            sizes[f"blas:{pool.get('internal_api')}"] = pool.get("num_threads")
    return sizes
