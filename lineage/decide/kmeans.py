"""The family classifier: the paper's K-Means seeded with the known bases, plus a calibrated "unknown".

`FamilyClassifier` follows scikit-learn's conventions: `__init__` stores parameters, `fit(references,
families)` learns (and validates) the labelled references, `classify(suspects)` returns every verdict.
Classification is transductive, as in the paper: references and suspects are clustered together, K-Means
starting from the references' own vectors (`n_init=1`), and each suspect takes the family of the
reference that seeded its cluster. Everything is computed in whole-matrix operations: one method call
gives the distances of all models to all references.

Per suspect the verdict holds its family, its nearest base *within that family* (so family and base never
disagree), the distance to that base, its distance to every reference, and a confidence in [0, 1]:

* known suspects: `1 - d_family / d_other`, where `d_family` is the distance to the nearest reference of
  the chosen family and `d_other` the distance to the nearest reference of any other family. 0 means
  another family is as close (or closer: K-Means disagreed with the nearest reference), 1 an exact match.
  With a single family among the references, `d_other` is the unknown threshold.
* unknown suspects (nearest reference farther than the threshold, see `lineage.decide.calibrate`):
  `1 - threshold / d_nearest`, how far beyond the threshold it lies. Family `unknown`, base None.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from lineage.compare import Method, get_method
from lineage.compare.base import ASSIGNMENTS
from lineage.decide.calibrate import DEFAULT_ALPHA, Calibration, calibrate_threshold, fixed_threshold
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.jobs.manifest import UNKNOWN_FAMILY

UNKNOWN = UNKNOWN_FAMILY
UNKNOWN_RULES: tuple[str, ...] = ("calibrated", "paper", "off")


@dataclass(frozen=True)
class Classification:
    """One model's verdict.

    Attributes:
        model: the model's name.
        family: its family, or "unknown".
        base: its nearest reference of that family (the reference's base label), None when unknown.
        distance: distance to `base` (to the nearest reference when unknown).
        confidence: in [0, 1], see the module docstring.
        distances: reference name -> distance.
        cluster_family: the family before the unknown rule (K-Means or nearest reference): the paper's answer.
        nearest: the nearest reference overall.
    """

    model: str
    family: str
    base: str | None
    distance: float
    confidence: float
    distances: dict[str, float]
    cluster_family: str
    nearest: str

    def to_dict(self) -> dict:
        """The JSON object of `lineage classify --format json`."""
        return {
            "model": self.model,
            "family": self.family,
            "base": self.base,
            "distance": self.distance,
            "confidence": self.confidence,
            "distances": dict(self.distances),
        }


@dataclass(frozen=True)
class ClassificationRun:
    """Everything one `classify` call decided.

    Attributes:
        results: one verdict per suspect, in order.
        reference_results: the references' own verdicts (K-Means may move a base to another cluster).
        calibration: the unknown threshold used.
        assignment: "kmeans" or "nearest".
        description: what the method did, in words.
    """

    results: list[Classification]
    reference_results: list[Classification]
    calibration: Calibration
    assignment: str
    description: str = ""
    reference_distances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)


def check_unknown_rule(rule: object) -> None:
    """Raise ValueError unless `rule` is one of `UNKNOWN_RULES` or a number >= 0."""
    if isinstance(rule, (int, float)) and not isinstance(rule, bool):
        if not rule >= 0:  # also rejects NaN
            raise ValueError("a fixed unknown threshold must be a number >= 0")
    elif rule not in UNKNOWN_RULES:
        raise ValueError(f"unknown must be one of {UNKNOWN_RULES} or a number, not {rule!r}")


class FamilyClassifier:
    """Open-set family classifier over fingerprints.

    Args:
        method: a method name (`lineage`, `tensorguard`) or instance.
        unknown: "calibrated" (default; `lineage.decide.calibrate`), "paper" (the method's published fixed
            threshold, 7 for tensorguard), "off", or a number (a fixed threshold).
        alpha: the calibrated threshold's false-claim rate.
        assign: "auto" (the method's choice), "kmeans" (the paper) or "nearest" (nearest reference).
        max_iter: K-Means iterations.
        random_state: seed for K-Means (it only matters when a cluster empties and is re-seeded).

    Example:
        >>> clf = FamilyClassifier(method="tensorguard").fit(references, ["llama", "qwen"])  # doctest: +SKIP
        >>> [r.family for r in clf.classify(suspects).results]  # doctest: +SKIP
        ['llama', 'unknown']
    """

    def __init__(
        self,
        method: str | Method = "lineage",
        unknown: str | float = "calibrated",
        alpha: float = DEFAULT_ALPHA,
        assign: str = "auto",
        max_iter: int = 300,
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.unknown = unknown
        self.alpha = alpha
        self.assign = assign
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(
        self, references: Sequence[Fingerprint], families: Sequence[str], bases: Sequence[str | None] | None = None
    ) -> FamilyClassifier:
        """Learn the labelled references.

        Args:
            references: the known models' fingerprints.
            families: their families.
            bases: their base labels (reported as a suspect's `base`); the reference names when None.

        Returns:
            self.

        Raises:
            ClassificationError: no references, mismatched labels, duplicate names, family "unknown".
        """
        if not references:
            raise ClassificationError("no references: a manifest needs rows with role=base to classify against")
        if len(families) != len(references) or (bases is not None and len(bases) != len(references)):
            raise ClassificationError("one family (and base) label per reference is needed")
        names = [fp.name for fp in references]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ClassificationError(f"duplicate reference name(s): {', '.join(dupes)}")
        if UNKNOWN in families:
            raise ClassificationError(f"a reference cannot have family '{UNKNOWN}': label it or drop it")
        if self.assign != "auto" and self.assign not in ASSIGNMENTS:
            raise ValueError(f"assign must be 'auto' or one of {ASSIGNMENTS}")
        check_unknown_rule(self.unknown)
        self.method_ = get_method(self.method)
        self.references_ = list(references)
        self.families_ = np.asarray(families, dtype=object)
        self.bases_ = [b or n for b, n in zip(bases or [None] * len(names), names)]
        self.classes_ = np.array(sorted(set(families)), dtype=object)
        return self

    def classify(self, suspects: Sequence[Fingerprint]) -> ClassificationRun:
        """Classify `suspects` (clustered together with the references).

        Args:
            suspects: fingerprints to classify (may be empty: the references are still clustered).

        Returns:
            The run: verdicts for suspects and references, and the threshold used.
        """
        if not hasattr(self, "references_"):
            raise ClassificationError("the classifier is not fitted: call fit(references, families) first")
        refs, n_ref = self.references_, len(self.references_)
        everyone = [*refs, *suspects]
        vectors, dist = self.method_.embed(everyone, refs)
        if not np.all(np.isfinite(dist)):
            raise ClassificationError("non-finite distances: a fingerprint holds NaN or Inf")
        assignment = self.method_.assignment(everyone) if self.assign == "auto" else self.assign
        if assignment == "kmeans":
            kmeans = KMeans(
                n_clusters=n_ref,
                init=vectors[:n_ref],
                n_init=1,
                max_iter=self.max_iter,
                random_state=check_random_state(self.random_state),
            )
            with warnings.catch_warnings():
                # Two references with equal vectors (a base listed twice under two names) make fewer distinct
                # clusters than seeds; the labels are still right, the warning would only be noise on stderr.
                warnings.simplefilter("ignore", ConvergenceWarning)
                kmeans.fit(vectors)
            cluster_family = self.families_[kmeans.labels_]
        else:
            cluster_family = self.families_[dist.argmin(axis=1)]
        calibration = self._calibration(dist[:n_ref])
        verdicts = self._verdicts([fp.name for fp in everyone], dist, cluster_family, calibration.threshold)
        return ClassificationRun(
            results=verdicts[n_ref:],
            reference_results=verdicts[:n_ref],
            calibration=calibration,
            assignment=assignment,
            description=self.method_.describe(everyone),
            reference_distances=dist[:n_ref],
        )

    def predict(self, suspects: Sequence[Fingerprint]) -> np.ndarray:
        """The family of each suspect ("unknown" included), as an object array."""
        return np.array([r.family for r in self.classify(suspects).results], dtype=object)

    def _calibration(self, reference_distances: np.ndarray) -> Calibration:
        rule = self.unknown
        if isinstance(rule, (int, float)) and not isinstance(rule, bool):
            return fixed_threshold(float(rule))
        if rule == "calibrated":
            return calibrate_threshold(reference_distances, self.families_, self.alpha)
        if rule == "off":
            return fixed_threshold(math.inf)
        if rule == "paper":
            if self.method_.paper_threshold is None:
                raise ClassificationError(f"method '{self.method_.name}' has no published threshold")
            return fixed_threshold(
                self.method_.paper_threshold, f"the paper's fixed threshold {self.method_.paper_threshold:g}"
            )
        raise ValueError(f"unknown must be one of {UNKNOWN_RULES} or a number, not {rule!r}")

    def _verdicts(
        self, names: list[str], dist: np.ndarray, cluster_family: np.ndarray, threshold: float
    ) -> list[Classification]:
        ref_names = [fp.name for fp in self.references_]
        same = cluster_family[:, None] == self.families_[None, :]  # [N, R]: references of the chosen family
        in_family = np.where(same, dist, np.inf)
        base_idx = in_family.argmin(axis=1)
        d_family = in_family.min(axis=1)
        d_other = np.where(same, np.inf, dist).min(axis=1)
        nearest = dist.argmin(axis=1)
        d_nearest = dist.min(axis=1)
        unknown = d_nearest > threshold
        alternative = np.where(np.isfinite(d_other), d_other, threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            known_conf = np.where(
                np.isinf(alternative), 1.0, np.where(alternative > 0, 1.0 - d_family / alternative, 0.0)
            )
            unknown_conf = 1.0 - threshold / d_nearest
        confidence = np.clip(np.where(unknown, unknown_conf, known_conf), 0.0, 1.0)
        out = []
        for i, name in enumerate(names):
            row = dist[i]
            out.append(
                Classification(
                    model=name,
                    family=UNKNOWN if unknown[i] else str(cluster_family[i]),
                    base=None if unknown[i] else self.bases_[base_idx[i]],
                    distance=float(d_nearest[i] if unknown[i] else d_family[i]),
                    confidence=float(confidence[i]),
                    distances={r: float(v) for r, v in zip(ref_names, row.tolist())},
                    cluster_family=str(cluster_family[i]),
                    nearest=ref_names[nearest[i]],
                )
            )
        return out
