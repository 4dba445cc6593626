"""A fuzz of the fingerprint cache: damage it at random, ask for every model, count wrong answers and tracebacks.

Each case starts from a sound cache of three tiny models (`a`, its noisy copy `a2` with identical headers,
`b` of another vocabulary size), damages it one way, then obtains every model through the cache and compares
the answer, byte for byte, with the model's fingerprint made without a cache (the strictest check: an answer
equal to it gives the same verdict). The damage, drawn from `seed`: a flipped bit anywhere in an entry; a
NaN, Inf or 1e30 written over a number in an entry's data; two entries swapped; an entry truncated; an entry
copied over another model's; and, under `verify_weights`, a model's weight file replaced by another's of
identical headers and size with its time kept (`cp -p`).

    python -m tests.jobs.cache_fuzz --cases 500 [--seed 0]

prints the counts (`tests/jobs/test_cache_fuzz.py` runs a subset by default and all 500 under `-m slow`).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import tempfile
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lineage.errors import LineageWarning
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import fingerprint_bytes
from lineage.fingerprint.obtain import obtain_fingerprint
from lineage.fingerprint.pipeline import FingerprintOptions, model_identity
from tests.checkpoints import TINY_LLAMA_CONFIG, tiny_llama_tensors, write_checkpoint

KINDS = ("bitflip", "nonfinite", "swap", "truncate", "copy", "replace_weights")
OPTIONS = FingerprintOptions(device="cpu")


@dataclass
class FuzzCounts:
    """What a fuzz run found: cases per kind, answers that were wrong, tracebacks, entries refused."""

    cases: Counter = field(default_factory=Counter)
    wrong: int = 0
    tracebacks: int = 0
    refused: int = 0
    answers: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        kinds = ", ".join(f"{k} {self.cases[k]}" for k in KINDS)
        return (
            f"{sum(self.cases.values())} cases ({kinds}); {self.answers} answers: {self.wrong} wrong, "
            f"{self.tracebacks} tracebacks; {self.refused} damaged entries refused and fingerprinted again"
        )


class _World:
    """The three models, their fresh fingerprints, and a sound cache of each mode to copy per case."""

    def __init__(self, root: Path) -> None:
        parent = tiny_llama_tensors(0)
        wide = {**TINY_LLAMA_CONFIG, "vocab_size": 256}
        self.root = root
        self.models = {
            "a": write_checkpoint(root / "models" / "a", parent),
            "a2": write_checkpoint(root / "models" / "a2", tiny_llama_tensors(1, parent=parent, noise=0.05)),
            "b": write_checkpoint(root / "models" / "b", tiny_llama_tensors(2, config=wide), wide),
        }
        self.truth = {n: fingerprint_bytes(obtain_fingerprint(p, OPTIONS)[0]) for n, p in self.models.items()}
        self.sound = {}
        for verify in (False, True):
            cache = FingerprintCache(root / f"sound-{verify}", verify_weights=verify)
            for path in self.models.values():
                obtain_fingerprint(path, OPTIONS, cache)
            self.sound[verify] = cache.folder

    def entry(self, cache: FingerprintCache, name: str, models: dict[str, Path] | None = None) -> Path:
        path = (models or self.models)[name]
        return cache.path_for(model_identity(path, OPTIONS, verify_weights=cache.verify_weights)[0])


def _damage(kind: str, rng: random.Random, world: _World, cache: FingerprintCache, models: dict[str, Path]) -> None:
    names = sorted(models)
    if kind == "bitflip":
        entry = world.entry(cache, rng.choice(names), models)
        data = bytearray(entry.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        entry.write_bytes(bytes(data))
    elif kind == "nonfinite":
        entry = world.entry(cache, rng.choice(names), models)
        data = bytearray(entry.read_bytes())
        (length,) = struct.unpack("<Q", data[:8])
        start = 8 + length  # the tensor data: float32, float16 and int64 arrays
        at = start + 2 * rng.randrange((len(data) - start) // 2 - 2)
        value = rng.choice([float("nan"), float("inf"), float("-inf"), 1e30])
        if rng.random() < 0.5:
            data[at : at + 2] = struct.pack("<e", value if value != 1e30 else float("inf"))
        else:
            data[at : at + 4] = struct.pack("<f", value)
        entry.write_bytes(bytes(data))
    elif kind == "swap":
        x, y = rng.sample(names, 2)
        ex, ey = world.entry(cache, x, models), world.entry(cache, y, models)
        dx, dy = ex.read_bytes(), ey.read_bytes()
        ex.write_bytes(dy)
        ey.write_bytes(dx)
    elif kind == "truncate":
        entry = world.entry(cache, rng.choice(names), models)
        data = entry.read_bytes()
        entry.write_bytes(data[: rng.randrange(len(data))])
    elif kind == "copy":
        x, y = rng.sample(names, 2)
        shutil.copyfile(world.entry(cache, x, models), world.entry(cache, y, models))
    elif kind == "replace_weights":
        x, y = rng.choice([("a", "a2"), ("a2", "a")])  # identical headers and sizes
        target, source = models[x] / "model.safetensors", world.models[y] / "model.safetensors"
        st = target.stat()
        shutil.copyfile(source, target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def fuzz(cases: int, seed: int = 0, root: Path | None = None) -> FuzzCounts:
    """Run `cases` fuzz cases (kinds in turn, the damage drawn from `seed`); see the module docstring."""
    rng = random.Random(seed)
    counts = FuzzCounts()
    with tempfile.TemporaryDirectory(prefix="lineage-cache-fuzz-") as tmp:
        root = Path(root or tmp)
        world = _World(root)
        for case in range(cases):
            kind = KINDS[case % len(KINDS)]
            counts.cases[kind] += 1
            here = root / f"case-{case}"
            verify = kind == "replace_weights" or rng.random() < 0.3
            shutil.copytree(world.sound[verify], here / "cache")
            cache = FingerprintCache(here / "cache", verify_weights=verify)
            models = world.models
            if kind == "replace_weights":  # the weights change: this case's own copy of the models
                shutil.copytree(world.root / "models", here / "models", copy_function=shutil.copy2)
                models = {n: here / "models" / n for n in world.models}
            _damage(kind, rng, world, cache, models)
            for name, path in models.items():
                try:
                    with warnings.catch_warnings(record=True) as said:
                        warnings.simplefilter("always")
                        got = fingerprint_bytes(obtain_fingerprint(path, OPTIONS, cache)[0])
                    truth = world.truth[name] if models is world.models else fingerprint_bytes(
                        obtain_fingerprint(path, OPTIONS)[0]
                    )  # fmt: skip
                except Exception:  # noqa: BLE001 - counted: the fuzz's point
                    counts.tracebacks += 1
                    counts.failures.append(f"case {case} ({kind}) {name}: {traceback.format_exc(limit=3)}")
                    continue
                counts.answers += 1
                counts.refused += sum(issubclass(w.category, LineageWarning) for w in said)
                if got != truth:
                    counts.wrong += 1
                    counts.failures.append(f"case {case} ({kind}) {name}: a wrong fingerprint")
            shutil.rmtree(here)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = fuzz(args.cases, args.seed)
    print(f"cache fuzz (seed {args.seed}): {counts.line()}")
    for failure in counts.failures[:10]:
        print(failure)


if __name__ == "__main__":
    main()
