"""What choosing anchors by token string costs on a 128k-token vocabulary (Llama 3's size).

Anchors are the `P` ordinary tokens of smallest seeded hash (`lineage.probe.anchors`): every string of the
vocabulary is hashed once, and a few candidate rows beyond `P` are read to skip untrained ones. This prints
the seconds of the choice on a synthetic vocabulary (random word-like strings, a share of them "untrained"),
the rows it asked for, and the seconds to read and choose on the real SmolLM2 folder when it is cached
(`tests/real.py`).

Usage:
    python bench/bench_anchors.py [--vocab 128256] [--anchors 64] [--untrained 0.02] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lineage.io.vocab import Vocabulary  # noqa: E402
from lineage.probe.anchors import choose_anchors  # noqa: E402


def _vocabulary(size: int, seed: int) -> Vocabulary:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    tokens = [chr(i) for i in range(256)]
    seen = set(tokens)
    while len(tokens) < size:
        t = " " * int(rng.integers(0, 2)) + "".join(rng.choice(letters, size=int(rng.integers(2, 10))))
        if t not in seen:
            seen.add(t)
            tokens.append(t)
    return Vocabulary(tuple(tokens), frozenset(range(16)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--anchors", type=int, default=64)
    parser.add_argument("--untrained", type=float, default=0.02, help="share of rows with an untrained norm")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    vocab = _vocabulary(args.vocab, 0)
    untrained = np.random.default_rng(1).random(args.vocab) < args.untrained
    asked: list[int] = []

    def row_norms(ids):  # noqa: ANN001, ANN202
        asked.extend(ids)
        return np.where(untrained[list(ids)], 0.01, 1.0)

    seconds = []
    for _ in range(args.repeat):
        asked.clear()
        start = time.perf_counter()
        got = choose_anchors(vocab, args.vocab, args.anchors, 0, row_norms)
        seconds.append(time.perf_counter() - start)
    print(f"synthetic vocabulary {args.vocab}: {statistics.median(seconds):.3f} s to choose {len(got.tokens)} "
          f"token anchors ({args.untrained:.0%} untrained rows); rows read {len(asked)}")

    folder = next((ROOT / ".lineage" / "test-models").glob("smollm2-hf-*"), None)
    if folder is None:
        print("SmolLM2 folder not cached (run tests/probe/test_vocab_real.py once): skipped")
        return
    from lineage.arch import resolve_model
    from lineage.fingerprint.pipeline import FingerprintOptions, _anchors
    from lineage.io import open_checkpoint

    seconds = []
    for _ in range(args.repeat):
        with open_checkpoint(folder) as reader:
            model = resolve_model(reader)
            start = time.perf_counter()
            _ = reader.vocabulary
            mid = time.perf_counter()
            got = _anchors(reader, model, FingerprintOptions(device="cpu", anchors=args.anchors))
            seconds.append((mid - start, time.perf_counter() - mid))
    vocab_s = statistics.median(s[0] for s in seconds)
    choose_s = statistics.median(s[1] for s in seconds)
    print(f"SmolLM2 ({len(reader.vocabulary)} tokens): read tokenizer.json {vocab_s:.3f} s, choose anchors "
          f"{choose_s:.3f} s, basis {got.basis}, {len(got.tokens)} token anchors")


if __name__ == "__main__":
    main()
