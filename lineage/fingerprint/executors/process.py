"""The `process` executor: N worker processes on this machine, one model each at a time.

`concurrent.futures.ProcessPoolExecutor` would be shorter, but when one of its workers dies it breaks the
whole pool and every model in flight is lost with it. Here each worker has its own pipe and the driver
knows which model each one holds: a dead worker (SIGKILL, the out-of-memory killer) costs its own model
one retry and nothing else, and a fresh worker takes its place. Workers are spawned (a forked copy of a
driver holding torch threads can deadlock), and each gets its share of the cores this process may use
(`lineage.fingerprint.threads`: affinity, cgroup quota, `OMP_NUM_THREADS`), so N workers never run more
threads than there are cores; each starts with that share and the passive wait policy in its environment,
so its pools are created at that size. A worker imports torch once and fingerprints model after model.
While a model streams, its worker reports weight bytes (throttled) so the driver can show progress inside
the model.

Interrupts end everything at once and quietly: workers ignore SIGINT (Ctrl-C reaches the whole process group,
and the driver alone answers it), and a driver leaving the loop on an exception kills its workers instead of
waiting for their models. Workers die with their driver: on Linux the kernel kills a worker whose parent
dies (`PR_SET_PDEATHSIG`), and everywhere a watchdog thread in the worker ends it once its parent is gone,
so a `kill -9` of the driver leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.errors import ExecutorError
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors.tasks import Plan, Task, run_task
from lineage.fingerprint.gather import ModelOutcome, weights_hook
from lineage.fingerprint.threads import Cores, limit_threads, worker_environment

if TYPE_CHECKING:
    from lineage.fingerprint.executors.options import ExecutorOptions
    from lineage.fingerprint.pipeline import FingerprintOptions

_WEIGHTS_EVERY_S = 0.2  # progress messages at most this often per worker: a pipe is not free
_PARENT_POLL_S = 0.5  # how often a worker's watchdog looks for its driver
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def gather_in_processes(
    items: Sequence[tuple[str | None, Path, object]],
    probe_options: Callable[[], FingerprintOptions],
    cache: FingerprintCache | None,
    progress: Callable[[int, int, str], None] | None,
    executor: ExecutorOptions,
) -> list[ModelOutcome]:
    """`lineage.fingerprint.executors.gather` on local worker processes (see the module docstring)."""
    plan = Plan(items, probe_options, cache, progress)
    if not plan.tasks:
        return plan.result()
    cores = Cores.detect()
    jobs = min(executor.jobs or cores.threads, len(plan.tasks))
    threads = executor.threads or cores.per_worker(jobs)
    queue: deque[Task] = deque(plan.tasks)
    attempts: dict[int, int] = {}
    busy: dict[_Worker, Task] = {}
    workers: list[_Worker] = []
    interrupted = True
    try:
        workers += [_Worker.start(threads) for _ in range(jobs)]
        while queue or busy:
            for worker in workers:
                if queue and worker not in busy:
                    task = queue.popleft()
                    attempts[task.index] = attempts.get(task.index, 0) + 1
                    worker.send(task)
                    busy[worker] = task
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in list(busy):
                task = busy[worker]
                for message in worker.drain():
                    if message[0] == "weights":
                        hook = weights_hook(progress, plan.label(task.index))
                        if hook is not None:
                            hook(message[1], message[2])
                    elif message[0] == "done":
                        plan.finish(message[1], attempts[task.index])
                        del busy[worker]
                if worker.dead:
                    if worker in busy:  # it died holding a model
                        del busy[worker]
                        if attempts[task.index] > executor.retries:
                            plan.fail(
                                task.index,
                                f"its worker died (exit code {worker.process.exitcode}) on each of "
                                f"{attempts[task.index]} attempts; fingerprint it alone to see why",
                                attempts[task.index],
                            )
                        else:
                            queue.appendleft(task)  # retried next, by a fresh worker
                    workers[workers.index(worker)] = _Worker.start(threads)
                    worker.close()
        interrupted = False
    finally:
        for worker in workers:
            # Interrupted (Ctrl-C, an error): the models in flight are abandoned, so no worker is waited for.
            worker.kill() if interrupted else worker.stop()
    return plan.result()


class _Worker:
    """One spawned worker process and the driver's end of its pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process, self.conn, self.dead = process, conn, False

    @classmethod
    def start(cls, threads: int) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=_worker_main, args=(theirs, threads, os.getpid()), daemon=True, name="lineage-worker"
        )
        # Started with SIGINT blocked in this thread, a mask the new interpreter inherits: a Ctrl-C while it
        # starts and imports stays pending until the worker ignores it (`_die_with_parent`), never a traceback.
        # Two things would undo that. multiprocessing's resource tracker unblocks SIGINT once it has spawned
        # itself (on the first start), so it is started first. And a Ctrl-C reaches whichever of the driver's
        # threads (torch's, the progress bar's) does not block it, and Python raises it in the main thread
        # anyway: between the spawn and the hand-over of the child's start-up data it would leave the child
        # to die on end-of-file with a traceback. So for the start the driver only notes a Ctrl-C, and raises
        # it once the child has what it needs; none is lost.
        resource_tracker.ensure_running()
        noted: list[int] = []
        try:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
        except ValueError:  # not the main thread: Python delivers no signal here
            previous = None
        blocked = _block_sigint(True)
        try:
            with _environment(worker_environment(threads)):  # a spawned child takes the driver's environment
                process.start()
        except OSError as exc:
            raise ExecutorError(f"cannot start a worker process: {exc}") from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if blocked:
                _block_sigint(False)
        if noted:
            theirs.close()
            worker = cls(process, ours)
            worker.kill()
            raise KeyboardInterrupt
        theirs.close()  # only the child holds its end now: its death reads as end-of-file here
        return cls(process, ours)

    def send(self, task: Task) -> None:
        try:
            self.conn.send(task)
        except (BrokenPipeError, OSError):
            self.dead = True  # noticed by the driver's loop like any other death

    def drain(self) -> list[tuple]:
        """Messages waiting on the pipe; marks the worker dead when its pipe is closed."""
        messages = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv())
        except (EOFError, OSError):
            self.dead = True
        if not self.dead and not self.process.is_alive():
            self.dead = True
        if self.dead:
            # The pipe closes a moment before the process is reaped: wait for it, so its exit code is known.
            self.process.join(timeout=5)
        return messages

    def close(self) -> None:
        self.conn.close()
        self.process.join(timeout=1)

    def kill(self) -> None:
        """End the worker now (SIGKILL), whatever it holds."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=1)
        self.conn.close()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def _block_sigint(block: bool) -> bool:
    """Block (or unblock) SIGINT for this thread where the platform can; whether it did."""
    if not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK if block else signal.SIG_UNBLOCK, {signal.SIGINT})
    return True


def _die_with_parent(parent: int) -> None:
    """Make this worker deaf to Ctrl-C and mortal with its driver `parent` (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _block_sigint(False)  # a Ctrl-C pending since the start is dropped: SIGINT is ignored now
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below does it
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)  # the driver is gone (it may have died before prctl took effect): nobody wants the answer

    threading.Thread(target=watch, name="lineage-parent-watchdog", daemon=True).start()


def _worker_main(conn: Connection, threads: int, parent: int) -> None:
    """A worker's loop: receive a task, run it, send its result; stop on None or a closed pipe."""
    _die_with_parent(parent)
    limit_threads(threads)  # its environment sized the pools already; this checks them (and imports torch)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        last = [0.0]

        def weights(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last[0] >= _WEIGHTS_EVERY_S:
                last[0] = now
                conn.send(("weights", done, total))

        conn.send(("done", run_task(task, weights)))


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the duration, then the environment as it was."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
