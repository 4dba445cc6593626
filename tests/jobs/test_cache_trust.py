"""The cache answers for the model asked about, or not at all: every entry is checked on every use.

Each test fails on the cache before entries were sealed (an entry was any readable fingerprint file under
the key's name): a copied entry, a flipped bit, a NaN, a truncated file were all used as they were, and a
weight file replaced with identical headers, size and time was answered from the cache.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from lineage.errors import CacheError, LineageWarning
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import fingerprint_bytes
from lineage.fingerprint.obtain import CACHED, FINGERPRINTED, obtain_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, model_identity
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

OPTIONS = FingerprintOptions(device="cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`a` and its noisy copy `a2` (one layout: identical headers), `b` of another vocabulary size."""
    root = tmp_path_factory.mktemp("trust")
    parent = tiny_llama_tensors(0)
    wide = {**TINY_LLAMA_CONFIG, "vocab_size": 256}
    return {
        "a": write_checkpoint(root / "a", parent),
        "a2": write_checkpoint(root / "a2", tiny_llama_tensors(1, parent=parent, noise=0.05)),
        "b": write_checkpoint(root / "b", tiny_llama_tensors(2, config=wide), wide),
    }


@pytest.fixture(scope="module")
def fresh(models: dict[str, Path]) -> dict[str, bytes]:
    """Each model's fingerprint made without a cache, as bytes (what every answer must equal)."""
    return {n: fingerprint_bytes(obtain_fingerprint(p, OPTIONS)[0]) for n, p in models.items()}


def _obtain(path: Path, cache: FingerprintCache) -> tuple[bytes, str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fp, how = obtain_fingerprint(path, OPTIONS, cache)
    return fingerprint_bytes(fp), how, [str(w.message) for w in caught if issubclass(w.category, LineageWarning)]


def _entry(cache: FingerprintCache, path: Path) -> Path:
    return cache.path_for(model_identity(path, OPTIONS, verify_weights=cache.verify_weights)[0])


def test_an_entry_copied_over_another_models_is_not_used(models, fresh, tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path)
    for name in ("b", "a2"):
        assert _obtain(models[name], cache)[1] == FINGERPRINTED
    shutil.copyfile(_entry(cache, models["b"]), _entry(cache, models["a2"]))  # issue 25, finding 1
    got, how, said = _obtain(models["a2"], cache)
    assert (got, how) == (fresh["a2"], FINGERPRINTED)
    assert len(said) == 1 and "another key" in said[0] and str(_entry(cache, models["a2"])) in said[0]
    assert _obtain(models["a2"], cache)[1:] == (CACHED, [])  # overwritten with the right one


def test_an_entry_of_a_model_with_the_same_headers_is_not_used_either(models, fresh, tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path)
    for name in ("a", "a2"):
        _obtain(models[name], cache)
    shutil.copyfile(_entry(cache, models["a"]), _entry(cache, models["a2"]))  # the base's entry over its copy's
    got, how, said = _obtain(models["a2"], cache)
    assert (got, how) == (fresh["a2"], FINGERPRINTED) and len(said) == 1


def test_an_entry_made_from_other_headers_is_not_used(models, fresh, tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path)
    key, headers = model_identity(models["a"], OPTIONS)
    _, other = model_identity(models["b"], OPTIONS)
    fp_b, _ = obtain_fingerprint(models["b"], OPTIONS)
    cache.put(key, fp_b, other)  # sealed soundly, under a's key, for b's headers
    assert cache.get(key, other, warn=False) is not None
    got, how, said = _obtain(models["a"], cache)
    assert (got, how) == (fresh["a"], FINGERPRINTED)
    assert len(said) == 1 and "made for another model" in said[0]


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_a_flipped_bit_is_fingerprinted_again_with_one_line(models, fresh, tmp_path: Path, where: float) -> None:
    cache = FingerprintCache(tmp_path)
    _obtain(models["a"], cache)
    entry = _entry(cache, models["a"])
    data = bytearray(entry.read_bytes())
    data[int(len(data) * where)] ^= 0x04
    entry.write_bytes(bytes(data))
    got, how, said = _obtain(models["a"], cache)
    assert (got, how) == (fresh["a"], FINGERPRINTED)
    assert len(said) == 1 and "cache entry" in said[0] and "\n" not in said[0]


def test_a_truncated_entry_is_fingerprinted_again(models, fresh, tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path)
    _obtain(models["a"], cache)
    entry = _entry(cache, models["a"])
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    got, how, said = _obtain(models["a"], cache)
    assert (got, how) == (fresh["a"], FINGERPRINTED) and "damaged" in said[0]


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e30])
def test_damaged_numbers_are_not_used(models, fresh, tmp_path: Path, value: float) -> None:
    from dataclasses import replace

    cache = FingerprintCache(tmp_path)
    key, headers = model_identity(models["a"], OPTIONS)
    fp, _ = obtain_fingerprint(models["a"], OPTIONS)
    sketch = fp.sketches["qk"].copy()
    sketch[0, 1, 2] = value
    bad = replace(fp, sketches={**fp.sketches, "qk": sketch})
    cache.put(key, bad, headers)
    path = cache.path_for(key)
    data = bytearray(path.read_bytes())
    if np.isfinite(value):  # a large finite value sealed soundly is what the model gave: damage it after the seal
        data[-5] ^= 0x40
        path.write_bytes(bytes(data))
    got, how, said = _obtain(models["a"], cache)
    assert (got, how) == (fresh["a"], FINGERPRINTED)
    assert len(said) == 1 and ("NaN/Inf" in said[0] or "sha256" in said[0])


def _replace_keeping_metadata(target: Path, source: Path) -> None:
    """Overwrite `target`'s weights with `source`'s (same headers and size), keeping its time (`cp -p`)."""
    weights, new = target / "model.safetensors", source / "model.safetensors"
    st = weights.stat()
    assert new.stat().st_size == st.st_size
    shutil.copyfile(new, weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_replaced_weights_with_identical_metadata(models, fresh, tmp_path: Path) -> None:
    model = write_checkpoint(tmp_path / "m", tiny_llama_tensors(0))
    default, verified = FingerprintCache(tmp_path / "c1"), FingerprintCache(tmp_path / "c2", verify_weights=True)
    assert _obtain(model, default)[1] == FINGERPRINTED and _obtain(model, verified)[1] == FINGERPRINTED
    _replace_keeping_metadata(model, models["a2"])
    # The default key reads headers, sizes and times only: the README's limit, held here so it is seen.
    assert _obtain(model, default)[1] == CACHED
    got, how, said = _obtain(model, verified)  # the sha256 of the bytes: never the old answer
    assert (got, how, said) == (fingerprint_bytes(obtain_fingerprint(model, OPTIONS)[0]), FINGERPRINTED, [])
    assert got != _obtain(model, default)[0]


def test_verify_weights_hits_when_nothing_changed(models, tmp_path: Path) -> None:
    cache = FingerprintCache(tmp_path, verify_weights=True)
    assert _obtain(models["a"], cache)[1] == FINGERPRINTED
    assert _obtain(models["a"], cache)[1:] == (CACHED, [])
    assert model_identity(models["a"], OPTIONS, verify_weights=True) != model_identity(models["a"], OPTIONS)


def test_a_cache_folder_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    for folder in (blocker, blocker / "below"):
        with pytest.raises(CacheError, match="is a file, not a folder"):
            FingerprintCache(folder)


def test_cli_a_cache_folder_that_is_a_file(models, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app

    blocker = tmp_path / "cache"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["scan", str(models["a2"]), "-r", "builtin", "--cache", str(blocker)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {blocker}: is a file, not a folder: the fingerprint "
                                                  "cache needs a folder (--cache DIR or $LINEAGE_CACHE)"]


def test_cli_says_a_damaged_entry_in_one_line(models, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lineage.cli.app import app

    cache = tmp_path / "cache"
    args = ["fingerprint", "-q", str(models["a"]), "--cache", str(cache), "--out", str(tmp_path / "fps")]
    args += ["--device", "cpu"]
    assert CliRunner().invoke(app, args).exit_code == 0
    entry = _entry(FingerprintCache(cache), models["a"])
    entry.write_bytes(entry.read_bytes()[:-3] + b"xyz")
    result = CliRunner().invoke(app, [*args[:-4], "--out", str(tmp_path / "fps2"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {entry}: cache entry damaged"), lines
    assert "fingerprinted" in result.stdout
