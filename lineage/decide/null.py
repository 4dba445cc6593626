"""The function test: is a suspect closer in *function* to a reference than independent models ever are?

The weight test (`lineage.compare.identity`) decides most derivations outright, but a disguise that redraws
every basis (a residual rotation together with per-head maps and a neuron permutation) leaves it nothing to
see. What such a derivative still keeps is its function: the circuit sketches (`qk`, `vo`, `ffn`) of a
lightly tuned copy correlate with its base at 0.9 and more. Independent models learn similar functions too,
most of all when they share the tokenizer and the data, so the test asks how unusual the suspect's
function distance `d = 1 - mean circuit correlation` is *for such a pair*.

The null sample is the hardest kind of unrelated pair there is: models of one family (one tokenizer, one
kind of data) and one width (the same shapes), trained from different initialisations: the catalog's
independent twins (`BUILTIN_NULL`, measured by `lineage evaluate null --write` on the catalog built with
seed 0 and shipped with the package), pooled with the pairs of such references a user's own reference set
holds. Unrelated pairs of other families or other sizes sit farther apart in function, so using the
hardest kind keeps the test conservative for them. Function distances are positive and spread
multiplicatively: the null is fitted as log-normal, and the p-value is the lower tail of the Student-t
prediction distribution for one more null pair (the sample is small, and its own mean and spread are
estimated).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

#: The identity circuits, equally weighted: what one block computes on the anchors, layer by layer.
FUNCTION_WEIGHTS: dict[str, float] = {"qk": 1 / 3, "vo": 1 / 3, "ffn": 1 / 3}
BUILTIN_NULL = Path(__file__).resolve().parents[1] / "data" / "null" / "function.json"
_FLOOR = 1e-6  # a distance of exactly 0 (an identical copy) has no logarithm
MIN_NULL = 3


@dataclass(frozen=True)
class FunctionNull:
    """A fitted null of function distances between independent same-family models.

    Attributes:
        distances: the null sample.
        source: where the sample came from, in words.
    """

    distances: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if any(not (d > 0 and math.isfinite(d)) for d in self.distances):
            raise ValueError("null distances must be positive and finite")

    @property
    def usable(self) -> bool:
        """Whether the sample is large enough to estimate a spread."""
        return len(self.distances) >= MIN_NULL

    def p_value(self, distance: float) -> float:
        """P(an independent pair is at least this close in function), 1.0 when the null is unusable."""
        if not self.usable:
            return 1.0
        logs = np.log(np.asarray(self.distances))
        n, mean, sd = len(logs), float(logs.mean()), float(logs.std(ddof=1))
        if sd <= 0:
            return 0.0 if distance < math.exp(mean) else 1.0
        z = (math.log(max(distance, _FLOOR)) - mean) / (sd * math.sqrt(1.0 + 1.0 / n))
        return float(student_t.cdf(z, df=n - 1))

    def to_dict(self) -> dict:
        logs = np.log(np.asarray(self.distances)) if self.distances else np.zeros(0)
        return {
            "n": len(self.distances),
            "geometric_mean": float(math.exp(logs.mean())) if len(logs) else None,
            "log_sd": float(logs.std(ddof=1)) if len(logs) > 1 else None,
            "source": self.source,
        }


@lru_cache(maxsize=4)
def builtin_null(pipeline: int | None, path: Path = BUILTIN_NULL) -> tuple[tuple[float, ...], str]:
    """The shipped null sample for fingerprints of pipeline version `pipeline` (empty if none matches)."""
    if not path.is_file():
        return (), "no built-in null"
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("pipeline") != pipeline:
        return (), f"built-in null is for pipeline {doc.get('pipeline')}, not {pipeline}"
    values = tuple(float(p["distance"]) for p in doc.get("pairs", []) if p.get("distance", 0) > 0)
    return values, f"{len(values)} independent same-family pairs ({doc.get('measured_on', 'catalog')})"


def pooled_null(reference_pairs: list[float], pipeline: int | None) -> FunctionNull:
    """The built-in sample pooled with a reference set's own same-family, different-base pairs."""
    shipped, note = builtin_null(pipeline)
    own = [max(float(d), _FLOOR) for d in reference_pairs]
    parts = [note] if shipped else []
    if own:
        parts.append(f"{len(own)} same-family reference pairs")
    return FunctionNull(tuple(shipped) + tuple(own), "; ".join(parts) or "no null sample")
