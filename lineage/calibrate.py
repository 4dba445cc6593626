"""The "unknown" threshold, set from the references themselves.

How the threshold is chosen (the rule the README quotes):

    A suspect is *unknown* when its distance to the nearest reference is not clearly smaller than the
    distance at which an unrelated model would sit. At classify time only the references are labelled,
    so the unrelated case is simulated with them, leave one family out: for each reference, its distance
    to the nearest reference of a *different* family is what the nearest-reference distance of a model
    of a family missing from the catalog looks like. These R numbers are the null sample.

    Distances are positive and spread multiplicatively, so the null is modelled as log-normal, fit
    robustly (median and 1.4826 x MAD of the log distances, so one odd reference pair does not move it).
    The threshold is its lower alpha-quantile (alpha = 5% by default: at most about one unrelated model
    in twenty is claimed by a family), and never above the smallest null distance actually observed: a
    suspect is only called related when it is closer to a reference than any two references of
    different families are to each other. A suspect is unknown when its nearest distance exceeds it.

    With references of a single family there are no unrelated pairs: nothing to calibrate, and unknown
    is never reported (the calibration says so). The paper's fixed threshold (7, TensorGuard's standardised
    feature units) and no threshold at all remain available as explicit choices.

The null is recomputed on every classify call, from the same distance computation as the suspects':
the feature methods scale over the models compared together, so their distances have no fixed unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

DEFAULT_ALPHA = 0.05
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Calibration:
    """A threshold on the nearest-reference distance, and how it was set.

    Attributes:
        threshold: suspects farther than this from every reference are unknown; `inf` = never.
        rule: "calibrated", "fixed" or "off".
        null: the null sample (each reference's distance to the nearest other-family reference).
        alpha: the false-claim rate the calibrated threshold aims at.
        note: one line that says how the number came about.
    """

    threshold: float
    rule: str
    null: tuple[float, ...] = ()
    alpha: float = DEFAULT_ALPHA
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


def null_distances(reference_distances: np.ndarray, families: np.ndarray | list[str]) -> np.ndarray:
    """Leave-one-family-out nearest distances: per reference, its distance to the nearest other family.

    Args:
        reference_distances: `[R, R]` distances among the references.
        families: the R references' families.

    Returns:
        `[R]` float64; empty when the references hold fewer than two families.
    """
    d = np.asarray(reference_distances, dtype=np.float64)
    fam = np.asarray(families)
    if len(np.unique(fam)) < 2:
        return np.zeros(0)
    other = fam[:, None] != fam[None, :]
    return np.where(other, d, np.inf).min(axis=1)


def calibrate_threshold(
    reference_distances: np.ndarray, families: np.ndarray | list[str], alpha: float = DEFAULT_ALPHA
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
        >>> round(calibrate_threshold(d, ["a", "b", "c"]).threshold, 3)
        0.9
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError("alpha must be in (0, 0.5)")
    null = null_distances(reference_distances, families)
    if len(null) == 0:
        return Calibration(
            math.inf, "calibrated", (), alpha, "references hold one family: no unrelated pairs, unknown is off"
        )
    smallest = float(null.min())
    if smallest <= 0.0:
        # Two references of different families are identical: nothing but an exact copy is clearly related.
        return Calibration(0.0, "calibrated", tuple(null.tolist()), alpha, "two families have identical references")
    logs = np.log(null)
    centre = float(np.median(logs))
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(logs - centre)))
    quantile = math.exp(centre - float(norm.ppf(1.0 - alpha)) * spread)
    threshold = min(quantile, smallest)
    note = (
        f"log-normal null of {len(null)} leave-one-family-out distances (median {math.exp(centre):.4g}); "
        f"{alpha:.0%} quantile {quantile:.4g}, smallest {smallest:.4g}"
    )
    return Calibration(threshold, "calibrated", tuple(null.tolist()), alpha, note)


def fixed_threshold(threshold: float, note: str = "") -> Calibration:
    """A threshold given by hand (e.g. the paper's 7); `inf` turns unknown off."""
    if math.isnan(threshold) or threshold < 0:
        raise ValueError("a threshold must be a non-negative number")
    rule = "off" if math.isinf(threshold) else "fixed"
    return Calibration(float(threshold), rule, (), DEFAULT_ALPHA, note or f"fixed threshold {threshold:g}")
