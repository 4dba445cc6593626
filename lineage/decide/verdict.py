"""Verdicts: `derived` from a base, `related` to a family, or `unknown`, each with the test behind it.

* **derived** from reference X: the suspect's weights descend from X's. Two tests, each against an explicit
  null of unrelated pairs, on identity evidence only: the *weight test* (`lineage.compare.identity`: the
  weights share X's arbitrary basis; its null is the symmetry of cosines between unrelated coordinates) and
  the *function test* (`lineage.decide.null`: the circuits are closer to X's than independent models of one
  tokenizer and one kind of data ever are). A pair's p-value is the smaller of the two, doubled
  (Bonferroni); the suspect's p-value is its best reference's, corrected for having tried R references
  (Sidak: `1 - (1 - p)^R`). Derived when that is below `alpha` (default 1%).
* **related** to family F: not derived from any reference, but within the family-level distance of one
  (shared tokenizer strings and output-embedding geometry, or another size of F): the calibrated threshold
  of `lineage.decide.calibrate`. The family is the K-Means cluster the suspect falls in.
* **unknown**: farther than that threshold from every reference.

Every number a verdict rests on is in it: the p-values, the per-layer agreement with the base, the
distances to the nearest references, the threshold and the rule, the probe settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DERIVED, RELATED, UNKNOWN = "derived", "related", "unknown"
VERDICTS: tuple[str, ...] = (DERIVED, RELATED, UNKNOWN)
DEFAULT_ALPHA = 0.01
NEAREST = 5  # references listed in a verdict


def sidak(p: float, tries: int) -> float:
    """`1 - (1 - p)^tries`: the chance that the best of `tries` unrelated references looks this related."""
    if p >= 1.0:
        return 1.0
    return float(-math.expm1(tries * math.log1p(-p)))  # exact for tiny p, where 1 - (1 - p)^R rounds to 0


@dataclass(frozen=True)
class Verdict:
    """One suspect's verdict.

    Attributes:
        model: the suspect's name.
        verdict: `derived`, `related` or `unknown`.
        derived_from: the base (the reference's base label) when derived, else None.
        family: the family for derived and related, `unknown` otherwise.
        p_value: the derivation test's p-value, corrected for the number of references (None when no
            test could run: fingerprints without sketches).
        nearest: the nearest references: `reference`, `family`, `distance`, `p_value` (per pair, uncorrected),
            `weight_p`, `function_p`, `function_distance`.
        evidence: what the verdict rests on: `weight` (the weight test against the best reference, with its
            per-layer cosines), `function` (function distance and per-circuit correlations), `family`
            (shared anchor tokens, output-embedding similarity), `basis` (token strings or ids).
        threshold: `alpha`, `related_distance` and the null's summary.
        rule: one line saying how the verdict was reached.
        method: the comparison method.
        lineage_version: the version that decided.
        probe_settings: the fingerprint's probe settings.
        cluster: the K-Means cluster (named by the family of the base that seeded it).
        distances: every reference's distance (the family-level distance of `lineage.compare`).
    """

    model: str
    verdict: str
    derived_from: str | None
    family: str
    p_value: float | None
    nearest: list[dict]
    evidence: dict
    threshold: dict
    rule: str
    method: str
    lineage_version: str
    probe_settings: dict
    cluster: str
    distances: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        if (self.verdict == DERIVED) != (self.derived_from is not None):
            raise ValueError("derived_from is set exactly for a derived verdict")

    @property
    def base(self) -> str | None:
        """The base the suspect derives from (None unless derived)."""
        return self.derived_from

    @property
    def distance(self) -> float:
        """The distance to the nearest reference."""
        return float(self.nearest[0]["distance"]) if self.nearest else float("nan")

    def words(self) -> str:
        """The verdict as a short phrase for a table."""
        if self.verdict == DERIVED:
            return f"derived from {self.derived_from}"
        if self.verdict == RELATED:
            return f"related to {self.family} (not derived)"
        return "unknown family"

    def to_dict(self) -> dict:
        """The JSON object of `lineage classify --format json`."""
        return {
            "model": self.model,
            "verdict": self.verdict,
            "derived_from": self.derived_from,
            "family": self.family,
            "p_value": self.p_value,
            "nearest": [dict(n) for n in self.nearest],
            "evidence": self.evidence,
            "threshold": self.threshold,
            "rule": self.rule,
            "method": self.method,
            "lineage_version": self.lineage_version,
            "probe_settings": self.probe_settings,
            "cluster": self.cluster,
            "distances": dict(self.distances),
            # The nearest distance, as scan rows carry it: the `distance` column of every table and CSV.
            "distance": self.distance,
        }
