"""Interrupting a `--executor process` run with real signals: quiet, fast, and no worker left behind.

Before: Ctrl-C printed about 70 lines of worker tracebacks, the driver took 10 s to exit when it alone was
signalled (it waited for each busy worker), and a `kill -9` of the driver left its workers running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the workers")

_CONFIG = {**TINY_LLAMA_CONFIG, "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
           "head_dim": 32, "vocab_size": 2048}  # fmt: skip
# Ctrl-C's default, as a terminal's foreground job has it: a test runner started in the background of a
# non-interactive shell (as CI may be) passes SIGINT on ignored, and Python keeps an inherited SIG_IGN.
_CLI = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from lineage.cli.app import main; sys.argv[0] = 'lineage'; main()"
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("interrupts")
    return [write_checkpoint(root / f"m{i}", tiny_llama_tensors(i, config=_CONFIG), _CONFIG) for i in range(24)]


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie is dead, waiting to be reaped


def _start(models: list[Path], tmp_path: Path, phase: str = "work") -> tuple[subprocess.Popen, set[int]]:
    """The CLI fingerprinting `models` on 2 worker processes; returns it and its workers once they run
    (`phase` "import": as soon as both exist, importing torch; "work": once a worker stored its first model
    in the cache, so that both are fingerprinting)."""
    env = {**os.environ, "LINEAGE_NO_PROGRESS": "1"}
    env.pop("LINEAGE_DEBUG", None)
    cache = tmp_path / "cache"
    args = [sys.executable, "-c", _CLI, "fingerprint", *map(str, models), "--executor", "process", "--jobs", "2",
            "--cache", str(cache), "--out", str(tmp_path / "fps"), "--device", "cpu"]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(workers := _children(proc.pid)) < 2 or (phase == "work" and not any(cache.rglob("*.safetensors"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.01)
    return proc, workers


def _finish(proc: subprocess.Popen) -> str:
    """Wait for `proc`; its stderr."""
    return proc.communicate(timeout=60)[1].decode()


def _gone_within(pids: set[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(("whom", "phase"), [("group", "import"), ("group", "work"), ("driver", "work")])
def test_ctrl_c_ends_the_run_at_once_without_tracebacks(models, tmp_path: Path, whom: str, phase: str) -> None:
    proc, workers = _start(models, tmp_path, phase)
    t0 = time.monotonic()
    if whom == "group":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        os.kill(proc.pid, signal.SIGINT)  # the driver alone
    proc.wait(timeout=30)  # stderr is small: the pipe cannot fill and hold the driver up
    waited = time.monotonic() - t0
    err = _finish(proc)
    assert proc.returncode != 0, "the run ended before the signal: give it more models"
    assert waited < 1.5, f"the driver took {waited:.1f} s to exit"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert _gone_within(workers, 1.0), "workers outlived their driver"


def test_workers_die_with_a_killed_driver(models, tmp_path: Path) -> None:
    proc, workers = _start(models, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    _finish(proc)
    assert _gone_within(workers, 2.0), "workers outlived their kill -9'd driver"


def _scan(manifest: Path, cache: Path, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "LINEAGE_NO_PROGRESS": "1"}
    env.pop("LINEAGE_DEBUG", None)
    args = [sys.executable, "-c", _CLI, "scan", str(manifest), "--executor", "process", "--jobs", "2", "--cache",
            str(cache), "--format", "json", "--device", "cpu", "-q"]  # fmt: skip
    return subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


@pytest.mark.slow
def test_kill_9_at_random_points_then_a_rerun_gives_the_uninterrupted_rows(models, tmp_path: Path) -> None:
    import json
    import random

    manifest = tmp_path / "m.csv"
    rows = [f"{m.name},{m},llama,{'base' if i < 2 else ''}" for i, m in enumerate(models[:6])]
    manifest.write_text("name,path,family,role\n" + "\n".join(rows) + "\n")
    t0 = time.monotonic()
    clean = _scan(manifest, tmp_path / "clean-cache", tmp_path)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err.decode()[-2000:]
    whole = time.monotonic() - t0
    expected = json.loads(out)["results"]
    rng = random.Random(25)
    cache = tmp_path / "cache"
    for _ in range(20):
        proc = _scan(manifest, cache, tmp_path)
        time.sleep(rng.uniform(0.2, whole))
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert _gone_within(workers, 2.0), "workers outlived their kill -9'd driver"
    rerun = _scan(manifest, cache, tmp_path)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert json.loads(out)["results"] == expected
