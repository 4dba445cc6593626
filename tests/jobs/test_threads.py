"""The thread policy (`lineage.fingerprint.threads`): the cores a process may use (affinity, cgroup v1 and v2
quotas read from fake files), the count a user asks for, the share of each worker, the environment a worker
starts with, and the pools the commands and the process executor's workers really run."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from typer.testing import CliRunner

from lineage.cli.app import app
from lineage.fingerprint.executors import ExecutorOptions, gather
from lineage.fingerprint.executors import tasks as executor_tasks
from lineage.fingerprint.threads import (
    POOL_VARIABLES,
    WAIT_POLICY,
    Cores,
    cgroup_quota,
    limit_threads,
    pool_sizes,
    prepare_process,
    requested_threads,
    worker_environment,
)
from lineage.jobs.scan import ScanOptions
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

CLI = Path(__file__).resolve().parents[2] / "lineage" / "cli"


@pytest.fixture
def pools() -> Iterator[None]:
    """Leave numpy's BLAS pools as they were (`tests/conftest.py` restores torch's and the environment)."""
    saved = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    yield
    if saved:
        threadpool_limits(limits=max(saved), user_api="blas")


# --- cgroups, from fake /proc and /sys trees -------------------------------------------------------------


def _fake(tmp_path: Path, cgroup: str, mountinfo: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "root"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc, root


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
)


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "0::/user.slice/job.scope\n",
        V2_MOUNT,
        {
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/user.slice/cpu.max": "150000 100000\n",  # the parent binds its child
            "sys/fs/cgroup/user.slice/job.scope/cpu.max": "300000 100000\n",
        },
    )
    assert cgroup_quota(proc, root) == pytest.approx(1.5)


def test_cgroup_v2_without_a_limit_is_none(tmp_path: Path) -> None:
    proc, root = _fake(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cgroup_quota(proc, root) is None


def test_cgroup_v1_quota_over_period(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "5:cpuset:/\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        V1_MOUNT,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",  # the root: no limit
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_quota(proc, root) == pytest.approx(2.5)


def test_cgroup_v1_in_a_container_sees_its_cgroup_at_the_mount(tmp_path: Path) -> None:
    # Without a cgroup namespace a container's /proc/self/cgroup names the host's path, and mountinfo says the
    # mount's root is the container's cgroup: its files are at the mount point, a child cgroup's below it.
    mount = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    proc, root = _fake(
        tmp_path,
        "4:cpu:/docker/abc/job\n",
        mount,
        {
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "200000\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu/job/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu/job/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_quota(proc, root) == pytest.approx(0.5)


def test_cgroup_v1_unlimited_and_missing_files_are_none(tmp_path: Path) -> None:
    proc, root = _fake(
        tmp_path,
        "4:cpu,cpuacct:/\n",
        V1_MOUNT,
        {"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000"},
    )
    assert cgroup_quota(proc, root) is None
    assert cgroup_quota(tmp_path / "no-proc", root) is None
    garbled, _ = _fake(tmp_path / "g", "garbage\n", "garbage\n", {})
    assert cgroup_quota(garbled, root) is None


# --- the count, the environment, the share ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "4,2"}, 4),  # nested levels: the first is this process's pool
        ({"OMP_NUM_THREADS": "0"}, None),
        ({"OMP_NUM_THREADS": "many"}, None),
        ({"MKL_NUM_THREADS": "2"}, 2),
        ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "2"}, 1),
    ],
)
def test_the_users_count_is_read_as_openmp_reads_it(environ: dict, expected: int | None) -> None:
    assert requested_threads(environ) == expected


@pytest.mark.parametrize(
    ("cores", "threads", "per_two", "per_three"),
    [
        (Cores(affinity=8), 8, 4, 2),
        (Cores(affinity=8, quota=2.5), 2, 1, 1),  # whole cores of the quota
        (Cores(affinity=2, quota=4.0), 2, 1, 1),  # the affinity caps a larger quota
        (Cores(affinity=4, quota=0.5), 1, 1, 1),  # at least one
        (Cores(affinity=2, requested=6), 6, 3, 2),  # what the user asked for wins
    ],
)
def test_threads_and_each_workers_share(cores: Cores, threads: int, per_two: int, per_three: int) -> None:
    assert cores.threads == threads
    assert (cores.per_worker(2), cores.per_worker(3)) == (per_two, per_three)


def test_cores_are_validated() -> None:
    for kwargs in ({"affinity": 0}, {"affinity": 2, "quota": 0.0}, {"affinity": 2, "requested": 0}):
        with pytest.raises(ValueError):
            Cores(**kwargs)
    with pytest.raises(ValueError, match="workers"):
        Cores(affinity=2).per_worker(0)


def test_detect_reads_affinity_quota_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 5})
    monkeypatch.setattr("lineage.fingerprint.threads.cgroup_quota", lambda: 3.0)
    assert Cores.detect({}) == Cores(affinity=4, quota=3.0)
    assert Cores.detect({}).threads == 3
    assert Cores.detect({"OMP_NUM_THREADS": "2"}).threads == 2


def test_a_worker_starts_with_its_share_and_the_passive_wait() -> None:
    env = worker_environment(3, environ={})
    assert env == {name: "3" for name in POOL_VARIABLES} | {"OMP_WAIT_POLICY": "PASSIVE"}
    assert "OMP_WAIT_POLICY" not in worker_environment(1, environ={"OMP_WAIT_POLICY": "ACTIVE"})  # the user's stays


def test_prepare_process_sets_the_wait_policy_and_the_count(pools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*POOL_VARIABLES, WAIT_POLICY[0]):
        os.environ.pop(name, None)
    monkeypatch.setattr("lineage.fingerprint.threads.cgroup_quota", lambda: None)
    cores = prepare_process(1)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    assert cores.threads == 1 and torch.get_num_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")


def test_prepare_process_respects_the_users_settings(pools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lineage.fingerprint.threads.cgroup_quota", lambda: None)
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    os.environ["OMP_NUM_THREADS"] = "1"
    assert prepare_process().threads == 1
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert torch.get_num_threads() == 1


def test_a_quota_below_the_affinity_is_written_for_openmp(pools: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in POOL_VARIABLES:
        os.environ.pop(name, None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr("lineage.fingerprint.threads.cgroup_quota", lambda: 1.0)
    assert prepare_process().threads == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1


def test_limit_threads_refuses_zero() -> None:
    with pytest.raises(ValueError):
        limit_threads(0)


# --- the commands ------------------------------------------------------------------------------------------


def _commands_with(option: str) -> dict[str, ast.FunctionDef]:
    """The command functions of the CLI with a parameter of the shared option type `option`."""
    found = {}
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                a.annotation is not None and ast.unparse(a.annotation) == option for a in node.args.args
            ):
                found[f"{path.stem}.{node.name}"] = node
    return found


def test_every_command_that_fingerprints_takes_threads_and_sets_them_first() -> None:
    # A command with --device fingerprints; its pools must be sized before anything in it imports torch.
    with_device, with_threads = _commands_with("DeviceOpt"), _commands_with("ThreadsOpt")
    assert set(with_device) <= set(with_threads), sorted(set(with_device) - set(with_threads))
    assert len(with_threads) >= 13  # fingerprint, classify, distance, scan, verify, attribute, evaluate x5, refs x2
    for name, node in with_threads.items():
        body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        first = ast.unparse(body[0])
        assert first == "use_threads(threads)", f"{name} starts with {first!r}"


def test_the_threads_option_reaches_the_pools(pools: None, tmp_path: Path) -> None:
    model = write_checkpoint(tmp_path / "m", tiny_llama_tensors(seed=3))
    for name in POOL_VARIABLES:
        os.environ.pop(name, None)
    args = ["fingerprint", str(model), "--threads", "1", "--no-cache", "--out", str(tmp_path / "fps"), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
    refused = CliRunner().invoke(app, [*args[:2], "--threads", "0"])
    assert refused.exit_code == 2 and "--threads" in refused.output


# --- the workers -------------------------------------------------------------------------------------------


def test_process_workers_run_their_share_with_the_passive_wait(
    pools: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = [write_checkpoint(tmp_path / f"m{i}", tiny_llama_tensors(seed=i)) for i in range(2)]
    os.environ.pop("OMP_WAIT_POLICY", None)
    monkeypatch.setattr(Cores, "detect", classmethod(lambda cls, environ=None: Cores(affinity=4, quota=2.0)))
    seen = []
    finish = executor_tasks.Plan.finish

    def recording(self, result, attempts=1):  # noqa: ANN001, ANN202
        seen.append(result.pools)
        return finish(self, result, attempts)

    monkeypatch.setattr(executor_tasks.Plan, "finish", recording)
    probe_options = ScanOptions(device="cpu").probe_options
    outcomes = gather([(None, m, None) for m in models], probe_options, None, None, ExecutorOptions("process", 2))
    assert all(o.ok for o in outcomes)
    # Two cores (the quota) for two workers: one thread each, in torch and in numpy's BLAS, waiting passively.
    assert len(seen) == 2
    for pools_seen in seen:
        assert pools_seen["torch"] == 1 and pools_seen["OMP_WAIT_POLICY"] == "PASSIVE"
        blas = [v for k, v in pools_seen.items() if k.startswith("blas:")]
        assert blas and set(blas) == {1}
    assert pool_sizes()["OMP_WAIT_POLICY"] is None  # the driver's own environment is left as it was


@pytest.mark.slow
@pytest.mark.parametrize("threads", [None, 2])
def test_ray_tasks_run_the_cpus_they_ask_for(
    threads: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    model = write_checkpoint(tmp_path / "m", tiny_llama_tensors(seed=5))
    seen = []
    finish = executor_tasks.Plan.finish
    monkeypatch.setattr(executor_tasks.Plan, "finish", lambda self, r, a=1: (seen.append(r.pools), finish(self, r, a)))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    except Exception as exc:  # noqa: BLE001 - Ray's own start-up (its raylet can time out on a loaded machine)
        pytest.skip(f"a local Ray cluster could not start here: {exc}")
    try:
        probe_options = ScanOptions(device="cpu").probe_options
        (outcome,) = gather([(None, model, None)], probe_options, None, None, ExecutorOptions("ray", threads=threads))
    finally:
        ray.shutdown()
    assert outcome.ok, outcome.error
    # One CPU per task unless told (Ray's num_cpus, and as many threads); the wait is passive.
    assert seen[0]["torch"] == (threads or 1) and seen[0]["OMP_WAIT_POLICY"] == "PASSIVE"
