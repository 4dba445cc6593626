"""Verdicts: `derived` from a base, `related` to a family, or `unknown`, each with the test behind it.

* **derived** from reference X: the suspect's weights descend from X's: the *weight test*
  (`lineage.compare.identity`) finds that they share X's arbitrary coordinates, against the exact null that
  a symmetry of independent training gives. The suspect's p-value is its best reference's, corrected for
  having tried R references (Sidak: `1 - (1 - p)^R`). Derived when that is below `alpha` (default 0.1%): an
  unrelated suspect is called derived with probability at most `alpha`. Where no reference passes that test,
  the suspect is still derived when the *unit matching test* (`lineage.compare.matching`) passes its rule
  against one: a model disguised by every symmetry at once. That test's null is *empirical* (its rate is
  measured on the calibration battery, not bounded), and the verdict's rule and JSON say so.
* **related** to family F: not derived from any reference, but within the family-level distance of one
  (shared tokenizer strings and output-embedding geometry, or another size of F): the calibrated threshold
  of `lineage.decide.calibrate`. The family is the K-Means cluster the suspect falls in.
* **unknown**: farther than that threshold from every reference.

Every number a verdict rests on is in it: the p-values, the per-layer agreement with the base, the
distances to the nearest references, the threshold and the rule, the probe settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lineage.decide.pvalues import format_p

DERIVED, RELATED, UNKNOWN = "derived", "related", "unknown"
VERDICTS: tuple[str, ...] = (DERIVED, RELATED, UNKNOWN)
#: The derivation test's level: the most an unrelated suspect is called derived. 0.1%, not 1%: on the seed-0
#: calibration battery every derivative's p-value is below 1e-100 while a level's false accusations scale with it.
DEFAULT_ALPHA = 0.001
NEAREST = 5  # references listed in a verdict
@dataclass(frozen=True)
class Verdict:
    """One suspect's verdict.

    Attributes:
        model: the suspect's name.
        verdict: `derived`, `related` or `unknown`.
        derived_from: the base (the reference's base label) when derived, else None.
        family: the family for derived and related, `unknown` otherwise.
        p_value: the derivation test's p-value, corrected for the number of references (None when no
            test could run: fingerprints without sketches), floored at 1e-300 (see `log10_p`).
        nearest: the nearest references: `reference`, `family`, `distance`, `p_value` and `log10_p` (per
            pair, uncorrected), `group` (the weight test's strongest group).
        evidence: what the verdict rests on: `weight` (the weight test against the best reference: every
            group's sign test and matched layers), `circuits` (per-circuit correlations), `family` (shared
            anchor tokens, output-embedding similarity), `basis` (token strings or ids).
        threshold: `alpha`, `related_distance`, `related_rule` and `related_calibrated` (False when the
            references hold one family: `related` is then never reported, and the words say so).
        rule: one line saying how the verdict was reached.
        method: the comparison method.
        lineage_version: the version that decided.
        probe_settings: the fingerprint's probe settings.
        cluster: the K-Means cluster (named by the family of the base that seeded it).
        distances: every reference's distance (the family-level distance of `lineage.compare`).
        log10_p: log10 of the p-value, exact where the float would underflow (None with no test).
        relation: how a derived suspect relates to its base where the weights tell: `quantised copy` (its own
            quantisation's rounding explains every difference, `lineage.compare.quantised`), else None.
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
    log10_p: float | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        if (self.verdict == DERIVED) != (self.derived_from is not None):
            raise ValueError("derived_from is set exactly for a derived verdict")
        if self.relation is not None and self.verdict != DERIVED:
            raise ValueError("only a derived verdict has a relation")

    @property
    def base(self) -> str | None:
        """The base the suspect derives from (None unless derived)."""
        return self.derived_from

    @property
    def empirical(self) -> bool:
        """Whether the verdict is `derived` by the unit matching test, on its empirical null (no p-value says it)."""
        return self.verdict == DERIVED and bool(self.evidence.get("matching", {}).get("derived"))

    @property
    def p_text(self) -> str:
        """The p-value for a table (`format_p`)."""
        return format_p(self.p_value, self.log10_p)

    @property
    def distance(self) -> float:
        """The distance to the nearest reference."""
        return float(self.nearest[0]["distance"]) if self.nearest else float("nan")

    def words(self) -> str:
        """The verdict as a short phrase for a table."""
        if self.verdict == DERIVED:
            return f"derived from {self.derived_from}" + (f" ({self.relation})" if self.relation else "")
        if self.verdict == RELATED:
            return f"related to {self.family} (not derived)"
        if self.threshold.get("related_calibrated") is False:
            return "unknown family (related not calibrated: one reference family)"
        return "unknown family"

    def to_dict(self) -> dict:
        """The JSON object of `lineage classify --format json`."""
        return {
            "model": self.model,
            "verdict": self.verdict,
            "derived_from": self.derived_from,
            "relation": self.relation,
            "family": self.family,
            "p_value": self.p_value,
            "log10_p": self.log10_p,
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
