"""The unknown rule: beyond which family-level distance a model is `unknown`, parsed and applied in one place.

The rules (`--unknown`, `FamilyClassifier(unknown=...)`, `lineage store classify --unknown`):

* `calibrated` (default): from the references' own cross-family distances (`lineage.decide.calibrate`).
* `paper`: the comparison method's published fixed threshold (the TensorGuard paper's 7 for
  `--method tensorguard`); a method that has none (lineage's own) refuses it in one line.
* `off`: never unknown (the threshold is infinite).
* a number >= 0: that fixed distance.

Every place that takes the rule parses it with `parse_unknown_rule`, checks it with `check_unknown_rule`
and turns it into a threshold with `unknown_threshold`, so `paper` means the same everywhere.
"""

from __future__ import annotations

import numpy as np

from lineage.compare.base import Method
from lineage.decide.calibrate import RELATED_ALPHA, Calibration, calibrate_threshold, fixed_threshold
from lineage.errors import ClassificationError

UNKNOWN_RULES: tuple[str, ...] = ("calibrated", "paper", "off")


def parse_unknown_rule(text: str) -> str | float:
    """The rule a command line wrote: a rule name, or a number (a fixed distance threshold).

    Raises:
        ValueError: neither a rule name nor a number >= 0 (the message says what is taken).

    Example:
        >>> parse_unknown_rule("paper"), parse_unknown_rule("0.5")
        ('paper', 0.5)
    """
    if text in UNKNOWN_RULES:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError("use calibrated, paper, off or a number") from None
    if not value >= 0:  # also rejects NaN
        raise ValueError("a threshold must be a number >= 0")
    return value


def check_unknown_rule(rule: object) -> None:
    """Raise ValueError unless `rule` is one of `UNKNOWN_RULES` or a number >= 0."""
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        if not rule >= 0:  # also rejects NaN
            raise ValueError("a fixed unknown threshold must be a number >= 0")
    elif rule not in UNKNOWN_RULES:
        raise ValueError(f"unknown must be one of {UNKNOWN_RULES} or a number, not {rule!r}")


def unknown_threshold(
    rule: str | float,
    reference_distances: np.ndarray,
    families: np.ndarray | list[str],
    method: Method,
    related_alpha: float = RELATED_ALPHA,
) -> Calibration:
    """The threshold `rule` sets for references at these distances, compared by `method`.

    Args:
        rule: see the module docstring.
        reference_distances: `[R, R]` family-level distances among the references.
        families: the references' families.
        method: the comparison method (its `paper_threshold` is what `paper` means).
        related_alpha: the calibrated threshold's level.

    Raises:
        ClassificationError: `paper` for a method with no published threshold.
    """
    check_unknown_rule(rule)
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        return fixed_threshold(float(rule))
    if rule == "calibrated":
        return calibrate_threshold(reference_distances, families, related_alpha)
    if rule == "off":
        return fixed_threshold(float("inf"))
    if method.paper_threshold is None:
        raise ClassificationError(f"method '{method.name}' has no published threshold")
    return fixed_threshold(method.paper_threshold, f"the paper's fixed threshold {method.paper_threshold:g}")
