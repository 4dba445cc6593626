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
        from lineage.cli.app import main
        main()
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
