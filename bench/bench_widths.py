"""The weight test across widths on tiny models of realistic depth: Minitron-style derivatives and a battery
of independent models of other widths (the recipes of `tests/probe/test_widths.py`).

The reference is a 24-layer Llama of hidden 256 and FFN 512 (`tests.widths.WIDE`, seed 0). Prints, for each
derivative (residual -25% and FFN -33% by importance; the same with a third of the layers dropped; each
with a fine-tune's noise, or distilled from the parent with `--distil STEPS`), every group's p-value;
then, for `--seeds` independent models at each of the widths 192 (FFN 344), 160 (FFN 384) and 320 (FFN 640,
wider than the reference), the pair's p-value, and how many pairs and how many residual-group tests fall
below 5%, 1% and 0.1% (with the count a binomial of that level would exceed with probability 1% at most):

    python bench/bench_widths.py [--seeds 8] [--distil 0]

The README's numbers are the default run's (8 seeds: 27 fingerprints of models of up to 24 layers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the recipes live in its tests/

LEVELS = (0.05, 0.01, 0.001)
WIDTHS = ((192, 344), (160, 384), (320, 640))


def _bound(n: int, level: float) -> int:
    """The smallest count a Binomial(n, level) exceeds with probability at most 1%."""
    from scipy.stats import binom

    return int(binom.ppf(0.99, n, level))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="independent models per width")
    parser.add_argument("--distil", type=int, default=0, help="distillation steps of the derivatives (0: noise)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from lineage.compare.identity import weight_test
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
    from tests.checkpoints import tiny_llama_tensors, write_checkpoint
    from tests.widths import WIDE, distilled, width_pruned

    root = Path(tempfile.mkdtemp(prefix="bench-widths-"))
    options = FingerprintOptions(device="cpu")

    def fingerprint(name: str, tensors: dict, config: dict):  # noqa: ANN202 - a Fingerprint
        return fingerprint_model(write_checkpoint(root / name, tensors, config), options)

    base = tiny_llama_tensors(0, config=WIDE)
    ref = fingerprint("base", base, WIDE)
    shallower = [i for i in range(WIDE["num_hidden_layers"]) if i % 3 != 1]
    for name, layers in (("width-pruned", None), ("width-and-depth-pruned", shallower)):
        tensors, config = width_pruned(base, WIDE, 192, 344, layers=layers)
        if args.distil:
            tensors = distilled(tensors, config, base, WIDE, steps=args.distil)
        else:
            tensors = tiny_llama_tensors(5, parent=tensors, noise=0.01)
        result = weight_test(fingerprint(name, tensors, config), ref)
        groups = ", ".join(f"{g.name} 1e{g.test.log10_p:.1f}" for g in result.groups)
        print(f"{name} (distil {args.distil}): p 1e{result.log10_p:.1f} via {result.group}; {groups}")

    pairs, residual = [], []
    for width, units in WIDTHS:
        config = dict(WIDE, hidden_size=width, intermediate_size=units)
        for seed in range(100, 100 + args.seeds):
            result = weight_test(fingerprint(f"independent-{width}-{seed}", tiny_llama_tensors(seed, config=config),
                                             config), ref)  # fmt: skip
            pairs.append(result.p_value)
            residual += [g.test.p_value for g in result.groups if g.name in ("embedding", "attention", "ffn")]
            print(f"independent width {width} seed {seed}: p {result.p_value:.3g} via {result.group}")
    for label, ps in (("pairs", pairs), ("residual-group tests", residual)):
        counts = ", ".join(f"{sum(p < a for p in ps)} below {a:g} (bound {_bound(len(ps), a)})" for a in LEVELS)
        print(f"{len(ps)} {label} of independent models: {counts}")


if __name__ == "__main__":
    main()
