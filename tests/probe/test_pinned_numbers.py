"""Every number of a fingerprint, pinned: a faster engine must compute the same fingerprint.

`tests/golden/pinned_llama.fingerprint.safetensors` is the whole fingerprint (sketches, raw responses,
identity responses, TensorGuard features) of a seeded bf16 Llama-layout model in two shards, wide enough
that its embedding and FFN matrices span many read blocks. It was written by the pipeline before the
streaming engine was rewritten for speed; `LINEAGE_UPDATE_GOLDEN=1` writes it anew (only when the numbers
are meant to change, with a pipeline version bump).

On the machine that wrote it the engine reproduces it bit for bit. Another CPU's BLAS sums in another
order: the same products made in float64 differ from the golden by up to 7e-7 of an array's largest entry,
and two float32 kernels can differ by about twice that. So float32 arrays must agree within 1e-5 of their
largest entry, float16 identity responses within one float16 step more (a value on a rounding boundary may
round either way), TensorGuard features within 1e-6 relative (skewness and kurtosis, O(1) numbers that are
differences of large power sums near 0: 1e-6 absolute). A wrong index or a missing bias moves numbers by
their own size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lineage.fingerprint import load_fingerprint, save_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from tests.checkpoints import tiny_llama_tensors, write_checkpoint

GOLDEN = Path(__file__).parent.parent / "golden" / "pinned_llama.fingerprint.safetensors"
CONFIG = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 8192,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
OPTIONS = FingerprintOptions(device="cpu", anchors=32)
TOLERANCE = 1e-5  # of an array's largest entry (module docstring)


@pytest.fixture(scope="module")
def pinned_model(tmp_path_factory) -> Path:
    tensors = {k: v.to(torch.bfloat16) for k, v in tiny_llama_tensors(7, config=CONFIG).items()}
    return write_checkpoint(tmp_path_factory.mktemp("pinned") / "pinned-llama", tensors, CONFIG, shards=2)


def assert_same_numbers(new, old) -> None:
    """`new` and `old` fingerprints hold the same numbers, to the tolerance in the module docstring."""
    assert new.anchors.tolist() == old.anchors.tolist()
    for section in ("sketches", "responses", "identity"):
        a, b = getattr(new, section), getattr(old, section)
        assert a.keys() == b.keys(), section
        for key in b:
            x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
            assert x.shape == y.shape, (section, key)
            scale = float(np.abs(y).max()) or 1.0
            if np.asarray(b[key]).dtype == np.float16:
                step = np.spacing(np.abs(y).astype(np.float16)).astype(np.float64)
                assert np.all(np.abs(x - y) <= step + TOLERANCE * scale), (section, key)
            else:
                assert float(np.abs(x - y).max()) <= TOLERANCE * scale, (section, key)
    assert new.tensorguard.keys() == old.tensorguard.keys()
    for key, value in old.tensorguard.items():
        # Skewness and kurtosis are O(1) numbers whose value near 0 is a difference of large power sums: 1e-6
        # absolute is their float32 precision; every other feature is held to 1e-6 relative.
        tol = 1e-6 if key.endswith(("skewness", "kurtosis")) else 1e-9
        assert new.tensorguard[key] == pytest.approx(value, rel=1e-6, abs=tol), key


def test_the_fingerprint_equals_the_pinned_one(pinned_model, tmp_path):
    fp = fingerprint_model(pinned_model, OPTIONS)
    if os.environ.get("LINEAGE_UPDATE_GOLDEN"):
        save_fingerprint(fp, GOLDEN)
        pytest.skip("pinned fingerprint written; run again to compare")
    assert_same_numbers(fp, load_fingerprint(GOLDEN))
