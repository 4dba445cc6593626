"""The "unknown" threshold, set from the references themselves.

How the threshold is chosen (the rule the README quotes):

    A suspect is *unknown* when its distance to the nearest reference is not clearly smaller than the
    distance at which an unrelated model would sit. At classify time only the references are labelled,
    so unrelated pairs are taken from them: the distances between every two references of *different*
    families are the null sample (unrelated models, as the catalog knows them).

    Distances are positive and spread multiplicatively, so the null is modelled as log-normal. A model of
    a family missing from the catalog is compared with all R references and judged by the nearest, so the
    per-pair level is corrected for taking a minimum of R (Sidak): alpha_R = 1 - (1 - alpha)^(1/R). The
    threshold is the lower one-sided prediction bound for one more unrelated distance at level alpha_R:
    exp(mean - t * sd * sqrt(1 + 1/R)) over the log distances, with t Student's quantile on R - 1 degrees
    of freedom. The pairs share their references, so the evidence is worth about R observations, not
    R(R-1)/2, and a catalog of few references gets a wide margin. On synthetic catalogs (random sketches,
    3 to 10 families, 10 catalogs each) this let through 1% to 6% of unrelated models on average at
    alpha = 5% (the default); the normal quantile of a robust median/MAD fit let through 12% to 40%.
    A suspect is unknown when its nearest distance exceeds the threshold.

    When the references hold several bases of one family (sizes of Llama, say), they also show how far a
    *related* model that is not a derivative sits: the distances between references of the same family.
    If all of them are below every cross-family distance, the two labelled samples are separated, and the
    threshold is lowered to the boundary of largest margin between them, the geometric midpoint of the
    largest same-family and the smallest cross-family distance, when that is stricter than the bound
    above. A family whose data resembles another's then cannot claim a suspect of a third, missing family
    merely because no two references happen to be that close.

    Fewer than three references (at most one unrelated pair) leave no spread to estimate: the threshold
    is then the median cross-family distance, i.e. related only when closer than the references of
    different families are to each other. With references of a single family there are no unrelated
    pairs: nothing to calibrate, so `related` is never reported (the rule is "uncalibrated", and a verdict
    says so): a suspect that is not derived is unknown. The paper's fixed
    threshold (7, TensorGuard's standardised feature units) and no threshold at all remain available as
    explicit choices.

The null is recomputed on every classify call, from the same distance computation as the suspects':
the feature methods scale over the models compared together, so their distances have no fixed unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

RELATED_ALPHA = 0.05
UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class Calibration:
    """A threshold on the nearest-reference distance, and how it was set.

    Attributes:
        threshold: suspects farther than this from every reference are unknown; `inf` = never.
        rule: "calibrated", "uncalibrated" (no unrelated reference pairs: related is not reported), "fixed"
            or "off".
        null: the null sample (distances between references of different families).
        alpha: the false-claim rate the calibrated threshold aims at.
        note: one line that says how the number came about.
    """

    threshold: float
    rule: str
    null: tuple[float, ...] = ()
    alpha: float = RELATED_ALPHA
    note: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form (an infinite threshold becomes None)."""
        return {
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "rule": self.rule,
            "alpha": self.alpha,
            "null": list(self.null),
            "note": self.note,
        }


def _pairs(reference_distances: np.ndarray, families: np.ndarray | list[str], same: bool) -> np.ndarray:
    d = np.asarray(reference_distances, dtype=np.float64)
    d = (d + d.T) / 2  # a method's distances may differ by rounding in the two directions
    fam = np.asarray(families)
    i, j = np.triu_indices(len(fam), k=1)
    return d[i, j][(fam[i] == fam[j]) == same]


def null_distances(reference_distances: np.ndarray, families: np.ndarray | list[str]) -> np.ndarray:
    """The distances between every two references of different families (each pair once).

    Args:
        reference_distances: `[R, R]` distances among the references (symmetrised here).
        families: the R references' families.

    Returns:
        float64 array; empty when the references hold fewer than two families.
    """
    return _pairs(reference_distances, families, same=False)


def related_distances(reference_distances: np.ndarray, families: np.ndarray | list[str]) -> np.ndarray:
    """The distances between every two references of the same family (each pair once)."""
    return _pairs(reference_distances, families, same=True)


def _with_margin(cal: Calibration, related: np.ndarray) -> Calibration:
    """Lower a calibrated threshold to the largest-margin boundary between related and unrelated pairs."""
    if not len(related) or not cal.null or not math.isfinite(cal.threshold):
        return cal
    hardest_related, closest_unrelated = float(related.max()), float(min(cal.null))
    if not 0.0 < hardest_related < closest_unrelated:
        return cal  # no same-family pair, or the two samples overlap: the null bound alone decides
    boundary = math.sqrt(hardest_related * closest_unrelated)
    if boundary >= cal.threshold:
        return cal
    note = (
        f"{cal.note}; lowered to {boundary:.4g}, the geometric midpoint of the largest same-family "
        f"({hardest_related:.4g}) and the smallest cross-family ({closest_unrelated:.4g}) reference distance"
    )
    return Calibration(boundary, cal.rule, cal.null, cal.alpha, note)


def calibrate_threshold(
    reference_distances: np.ndarray, families: np.ndarray | list[str], alpha: float = RELATED_ALPHA
) -> Calibration:
    """The calibrated unknown threshold (rule in the module docstring).

    Args:
        reference_distances: `[R, R]` distances among the references.
        families: the references' families.
        alpha: the share of unrelated models the threshold may let through, in (0, 0.5).

    Returns:
        The calibration.

    Example:
        >>> d = np.array([[0.0, 1.0, 1.1], [1.0, 0.0, 0.9], [1.1, 0.9, 0.0]])
        >>> round(calibrate_threshold(d, ["a", "b", "c"]).threshold, 2)
        0.54
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError("alpha must be in (0, 0.5)")
    bound = _null_bound(reference_distances, families, alpha)
    return _with_margin(bound, related_distances(reference_distances, families))


def _null_bound(reference_distances: np.ndarray, families: np.ndarray | list[str], alpha: float) -> Calibration:
    null = null_distances(reference_distances, families)
    if len(null) == 0:
        return Calibration(
            math.inf, UNCALIBRATED, (), alpha,
            "references hold one family: no unrelated pairs to calibrate `related` on, so it is not reported",
        )  # fmt: skip
    if float(null.min()) <= 0.0:
        # Two references of different families are identical: nothing but an exact copy is clearly related.
        return Calibration(0.0, "calibrated", tuple(null.tolist()), alpha, "two families have identical references")
    n_refs = len(families)
    if n_refs < 3 or len(null) < 2:
        threshold = float(np.median(null))
        note = f"{n_refs} references: too few to estimate a spread; median cross-family distance {threshold:.4g}"
        return Calibration(threshold, "calibrated", tuple(null.tolist()), alpha, note)
    per_pair = 1.0 - (1.0 - alpha) ** (1.0 / n_refs)
    logs = np.log(null)
    centre, spread = float(logs.mean()), float(logs.std(ddof=1))
    margin = float(student_t.ppf(1.0 - per_pair, df=n_refs - 1)) * spread * math.sqrt(1.0 + 1.0 / n_refs)
    threshold = math.exp(centre - margin)
    note = (
        f"prediction bound at {per_pair:.3%} (= {alpha:.0%} for the nearest of {n_refs} references) of a "
        f"log-normal fit to {len(null)} cross-family distances (geometric mean {math.exp(centre):.4g}, "
        f"log-sd {spread:.3g})"
    )
    return Calibration(threshold, "calibrated", tuple(null.tolist()), alpha, note)


def fixed_threshold(threshold: float, note: str = "") -> Calibration:
    """A threshold given by hand (e.g. the paper's 7); `inf` turns unknown off."""
    if math.isnan(threshold) or threshold < 0:
        raise ValueError("a threshold must be a non-negative number")
    rule = "off" if math.isinf(threshold) else "fixed"
    return Calibration(float(threshold), rule, (), RELATED_ALPHA, note or f"fixed threshold {threshold:g}")
