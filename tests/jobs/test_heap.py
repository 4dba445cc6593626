"""Freed response buffers go back to the system: the C heap does not keep what a fingerprint freed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lineage.fingerprint import heap

# The pattern that grew OLMoE's fingerprint to 674 MB: a large freed block raises glibc's threshold, then
# blocks below it come from the heap and an allocation after each keeps their space from going back.
PATTERN = """
import sys
import torch
from lineage.fingerprint.heap import release_free_memory
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) // 1024
big = torch.ones(4 << 20); del big
before, pins, blocks = anon(), [], []
for i in range(50):
    blocks.append(torch.ones(1 << 20))  # 4 MB each, 200 MB in all
    pins.append(torch.ones(16 << 10))  # 64 KB: below any threshold, above every small hole: on the top
del blocks
if sys.argv[1] == "released":
    assert release_free_memory()
print(anon() - before)
"""


def _kept_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not heap.release_free_memory(), reason="glibc only")
def test_freed_blocks_kept_by_the_heap_go_back_to_the_system():
    assert _kept_mb("kept") >= 150  # glibc's own behaviour keeps them (what the release is for)
    assert _kept_mb("released") <= 20


def test_without_glibc_nothing_is_released(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(heap, "_trim", [])
    monkeypatch.setattr(heap, "_malloc_trim", lambda: None)
    assert heap.release_free_memory() is False


def test_the_pipeline_releases_every_few_weights(monkeypatch: pytest.MonkeyPatch, tmp_path):
    from lineage.fingerprint import pipeline
    from tests.checkpoints import tiny_llama_tensors, write_checkpoint

    calls = []
    monkeypatch.setattr(pipeline, "release_free_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(pipeline, "TRIM_EVERY", 2)
    pipeline.fingerprint_model(write_checkpoint(tmp_path / "tiny", tiny_llama_tensors()))
    assert len(calls) == 7  # 14 weights streamed (2 layers of 7), one release every 2
