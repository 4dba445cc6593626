"""Issue 18 (start-up): the CLI imports no heavy library before a command needs it, so `--version`, `--help`
and argument errors answer at once. Checked in fresh interpreters (this one has imported everything)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sklearn", "polars", "matplotlib", "scipy", "umap", "safetensors", "gguf")

_PROBE = """
import json, sys
sys.argv = ["lineage", *json.loads(sys.argv[1])]
try:
    if sys.argv[1:]:
        from lineage.cli.app import app
        app()  # the typer app itself: `main` would end the process before the report below
    else:
        import lineage.cli.app
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)), file=sys.stderr)
"""


def _heavy_imported(*args: str) -> list[str]:
    code = _PROBE.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [(), ("--version",), ("--help",), ("classify", "--help"), ("scan", "--help"), ("classify",), ("nope",)],
    ids=["import", "version", "help", "classify-help", "scan-help", "missing-argument", "unknown-command"],
)
def test_the_cli_starts_without_heavy_imports(args: tuple[str, ...]) -> None:
    assert _heavy_imported(*args) == []


def test_the_probe_sees_an_import() -> None:
    # The check above can fail: a command that fingerprints does import torch.
    assert "torch" in _heavy_imported("fingerprint", "--device", "cuda", "/nonexistent")


_EXIT = """
import sys, threading, time
from lineage.cli.app import main
sys.argv = ["lineage", *sys.argv[1:]]
if sys.argv[-1] == "--with-thread":
    sys.argv.pop()
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
import atexit
atexit.register(lambda: print("exit handler ran", flush=True))
main()
"""


@pytest.mark.parametrize(
    ("args", "code", "out", "err"),
    [
        (("--version",), 0, "lineage ", ""),
        (("fingerprint", "/nonexistent", "--quiet"), 1, "/nonexistent: no such file", ""),
        (("nope",), 2, "exit handler ran", "No such command 'nope'"),
        (("--version", "--with-thread"), 0, "thread done", ""),
    ],
    ids=["version", "lineage-error", "usage-error", "worker-thread"],
)
def test_the_quick_exit_keeps_codes_output_and_exit_handlers(args, code, out, err) -> None:
    # `main` ends the process without the interpreter's teardown: the exit code, what was printed (to pipes,
    # so buffered), the exit handlers and a running non-daemon thread must all come through as before.
    done = subprocess.run([sys.executable, "-c", _EXIT, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert out in done.stdout and "exit handler ran" in done.stdout
    assert err in done.stderr
