"""The every-architecture harness: a base, its noisy copy and an independent seed, through the weight test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lineage.arch import resolve_model
from lineage.compare.identity import weight_test
from lineage.decide.verdict import DEFAULT_ALPHA
from lineage.errors import LineageError
from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model
from lineage.io import open_checkpoint
from tests.arch import zoo

OPTIONS = FingerprintOptions(device="cpu")


@dataclass(frozen=True)
class Outcome:
    """What the harness saw for one architecture: a refusal, or the two weight tests' log10 p-values."""

    model_type: str
    refusal: str | None = None
    copy_log10_p: float = 0.0
    independent_log10_p: float = 0.0
    unaccounted: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """The copy is derived and the independent seed is not, at the default level."""
        level = math.log10(DEFAULT_ALPHA)
        tests = self.copy_log10_p < level <= self.independent_log10_p
        return self.refusal is None and not self.unaccounted and tests


def unaccounted(folder: Path) -> tuple[str, ...]:
    """The tensors of the checkpoint that get neither a role nor a named reason for being left unread."""
    with open_checkpoint(folder) as reader:
        model = resolve_model(reader)
        return tuple(sorted(set(reader.names()) - set(model.roles()) - set(model.unread)))


def models(model_type: str, root: Path) -> tuple[Path, Path, Path]:
    """`(base, noisy copy, independent seed)` of `model_type` under `root`, built once."""
    base, copy, other = root / "base", root / "copy", root / "independent"
    if not (base / "config.json").is_file():
        zoo.build(model_type, 0, base)
        zoo.noisy_copy(base, copy)
        zoo.build(model_type, 1, other)
    return base, copy, other


def run(model_type: str, root: Path) -> Outcome:
    """Fingerprint the three models of `model_type` and test the copy and the independent seed."""
    base, copy, other = models(model_type, root)
    try:
        fps = [fingerprint_model(p, OPTIONS) for p in (base, copy, other)]
    except LineageError as exc:
        return Outcome(model_type, refusal=str(exc))
    tests = weight_test(fps[1], fps[0]).log10_p, weight_test(fps[2], fps[0]).log10_p
    return Outcome(model_type, None, *tests, unaccounted=unaccounted(base))


if __name__ == "__main__":  # python -m tests.arch.harness ROOT [TYPES...]: one line per architecture
    import sys
    import time


    root = Path(sys.argv[1])
    results = []
    for mt in sys.argv[2:] or zoo.ARCHITECTURES:
        t0 = time.time()
        out = run(mt, root / mt)
        results.append(out)
        what = f"refused: {out.refusal[:150]}" if out.refusal else (
            f"copy {out.copy_log10_p:.1f} independent {out.independent_log10_p:.2f}"
            + (f" unaccounted: {', '.join(out.unaccounted)}" if out.unaccounted else ""))
        print(f"{'PASS' if out.passed else 'FAIL'} {mt:18s} {time.time() - t0:5.1f}s {what}", flush=True)
    print(f"{sum(r.passed for r in results)} of {len(results)} pass")
