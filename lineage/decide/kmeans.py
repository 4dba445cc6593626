"""The family classifier: K-Means seeded with the known bases, fitted on the references, then one verdict
per suspect that no other suspect can change.

`FamilyClassifier` is a scikit-learn style estimator. `fit(references, families, bases)` learns everything
that rests on the references alone: their distances to each other, the calibrated family-level threshold
(`lineage.decide.calibrate`) and a K-Means of their vectors with
one centroid started at each base (the paper's design; `n_init=1`; with references that hold several
models of one base the centroids move to those groups' centres). `predict(suspects)` then gives each
suspect its verdict (`lineage.decide.verdict`) from the suspect and the fitted state only: a suspect's
verdict is the same alone and in any batch (the paper refits K-Means on every batch, so one model's answer
could depend on which others were scanned with it). Suspects are compared with the references one at a
time for that reason: batched matrix products may round differently with the batch's size.
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

from lineage import __version__
from lineage.compare import Method, get_method
from lineage.compare.evidence import basis, circuit_similarities, family_evidence
from lineage.compare.experts import experts_sentence
from lineage.compare.identity import WeightTest, weight_test
from lineage.compare.lineage import uses_sketches
from lineage.compare.matching import EMPIRICAL_NULL, MAX_LOG10_TAIL, MIN_AGREEMENT, unit_matching
from lineage.compare.quantised import QUANTISED_COPY, quantised_fit
from lineage.compare.similarity import vocabulary_overlap
from lineage.decide.calibrate import RELATED_ALPHA, UNCALIBRATED, Calibration
from lineage.decide.pvalues import format_p, p_from_log10, sidak_log10
from lineage.decide.unknown import check_unknown_rule, unknown_threshold
from lineage.decide.verdict import DEFAULT_ALPHA, DERIVED, NEAREST, RELATED, UNKNOWN, Verdict
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint

#: A model is `related` to a family only if it shares the family's tokenizer: most of the two vocabularies'
#: union (one tokenizer shares all of it, tokenizers of different catalog families a third or less).
RELATED_MIN_OVERLAP = 0.8


@dataclass(frozen=True)
class ClassificationRun:
    """Everything one `classify` call decided.

    Attributes:
        results: one verdict per suspect, in order.
        reference_results: the references' own verdicts.
        calibration: the family-level (related/unknown) threshold.
        description: what the method did, in words.
        reference_distances: `[R, R]` distances among the references.
    """

    results: list[Verdict]
    reference_results: list[Verdict]
    calibration: Calibration
    description: str = ""
    reference_distances: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)


class FamilyClassifier:
    """Open-set lineage classifier over fingerprints.

    Args:
        method: a method name (`lineage`, `tensorguard`) or instance.
        unknown: the family-level threshold: "calibrated" (default), "paper" (the method's published
            fixed threshold), "off", or a number.
        alpha: the derivation test's level (the share of unrelated suspects it may call derived).
        related_alpha: the calibrated family threshold's level.
        max_iter: K-Means iterations.
        random_state: K-Means seed (it only matters when a cluster empties and is re-seeded).

    Example:
        >>> clf = FamilyClassifier().fit(references, ["llama", "qwen"])  # doctest: +SKIP
        >>> [v.verdict for v in clf.predict(suspects)]  # doctest: +SKIP
        ['derived', 'unknown']
    """

    def __init__(
        self,
        method: str | Method = "lineage",
        unknown: str | float = "calibrated",
        alpha: float = DEFAULT_ALPHA,
        related_alpha: float = RELATED_ALPHA,
        max_iter: int = 300,
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.unknown = unknown
        self.alpha = alpha
        self.related_alpha = related_alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(
        self, references: Sequence[Fingerprint], families: Sequence[str], bases: Sequence[str | None] | None = None
    ) -> FamilyClassifier:
        """Learn the labelled references (see the module docstring).

        Args:
            references: the known models' fingerprints.
            families: their families.
            bases: their base labels (a derived suspect's `derived_from`); the reference names when None.

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
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        check_unknown_rule(self.unknown)
        self.method_ = get_method(self.method)
        self.references_ = list(references)
        self.names_ = names
        self.families_ = np.asarray(families, dtype=object)
        self.bases_ = [b or n for b, n in zip(bases or [None] * len(names), names)]
        self.classes_ = np.array(sorted(set(families)), dtype=object)
        vectors, dist = self.method_.embed(self.references_, self.references_)
        if not np.all(np.isfinite(dist)):
            raise ClassificationError("non-finite distances: a reference fingerprint holds NaN or Inf")
        self.reference_distances_ = dist
        self.calibration_ = self._calibration(dist)
        # One centroid per base, started at the base's own vector (the first reference of each base label).
        seeds = [self.bases_.index(b) for b in dict.fromkeys(self.bases_)]
        self.cluster_families_ = self.families_[seeds]
        self.kmeans_ = KMeans(
            n_clusters=len(seeds),
            init=vectors[seeds],
            n_init=1,
            max_iter=self.max_iter,
            random_state=check_random_state(self.random_state),
        )
        with warnings.catch_warnings():
            # Two references with equal vectors (a base listed twice) make fewer distinct clusters than seeds.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.kmeans_.fit(vectors)
        self.cluster_centers_ = self.kmeans_.cluster_centers_
        self.testable_ = uses_sketches(self.references_)
        return self

    def predict(self, suspects: Sequence[Fingerprint]) -> list[Verdict]:
        """One verdict per suspect, each from the suspect and the fitted references alone."""
        self._check_fitted()
        return [self._verdict(fp) for fp in suspects]

    def _check_fitted(self) -> None:
        if not hasattr(self, "references_"):
            raise ClassificationError("the classifier is not fitted: call fit(references, families) first")

    def classify(self, suspects: Sequence[Fingerprint]) -> ClassificationRun:
        """Verdicts for the suspects and for the references themselves.

        For a transductive method (the TensorGuard recipe) this is the paper's procedure: K-Means over the
        references and suspects together, seeded at the bases, each model taking its cluster's family.
        Otherwise it is `predict` on the suspects and on the references.
        """
        self._check_fitted()
        if getattr(self.method_, "transductive", False):
            everyone = [*self.references_, *suspects]
            verdicts = self._transductive(everyone)
            results, reference_results = verdicts[len(self.references_) :], verdicts[: len(self.references_)]
        else:
            results, reference_results = self.predict(suspects), self.predict(self.references_)
        return ClassificationRun(
            results=results,
            reference_results=reference_results,
            calibration=self.calibration_,
            description=self.method_.describe(self.references_),
            reference_distances=self.reference_distances_,
        )

    def _transductive(self, everyone: list[Fingerprint]) -> list[Verdict]:
        """The paper's clustering of references and suspects together (see `classify`)."""
        vectors, dist = self.method_.embed(everyone, self.references_)
        seeds = [self.bases_.index(b) for b in dict.fromkeys(self.bases_)]
        kmeans = KMeans(
            n_clusters=len(seeds), init=vectors[seeds], n_init=1, max_iter=self.max_iter,
            random_state=check_random_state(self.random_state),
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = kmeans.fit(vectors).labels_
        out = []
        for fp, d, label in zip(everyone, dist, labels):
            family = str(self.cluster_families_[label])
            j = int(np.argmin(d))
            known = d[j] <= self.calibration_.threshold
            rule = (
                f"{'related' if known else 'unknown'}: the paper's K-Means over {len(everyone)} models puts it in "
                f"the cluster of a {family} base; nearest reference {self.names_[j]} at {d[j]:.4g} "
                f"({'<=' if known else '>'} {self.calibration_.threshold:.4g}); no derivation test on these features"
            )
            out.append(
                Verdict(
                    model=fp.name, verdict=RELATED if known else UNKNOWN, derived_from=None,
                    family=family if known else UNKNOWN, p_value=None,
                    nearest=[{"reference": self.names_[k], "family": str(self.families_[k]), "distance": float(d[k])}
                             for k in np.argsort(d, kind="stable")[:NEAREST]],
                    evidence={}, threshold={"related_distance": self.calibration_.to_dict()["threshold"],
                                            "related_rule": self.calibration_.note},
                    rule=rule, method=self.method_.name, lineage_version=__version__,
                    probe_settings=dict(fp.settings), cluster=family,
                    distances={n: float(v) for n, v in zip(self.names_, d.tolist())},
                )
            )  # fmt: skip
        return out

    # -- one suspect ---------------------------------------------------------------------------------

    def _verdict(self, fp: Fingerprint) -> Verdict:
        vectors, dist = self.method_.embed([fp], self.references_)
        d = dist[0]
        if not np.all(np.isfinite(d)):
            raise ClassificationError(f"'{fp.name}': non-finite distances, its fingerprint holds NaN or Inf")
        order = np.argsort(d, kind="stable")
        if self.method_.assignment([fp, *self.references_]) == "nearest":
            # The method asks for the nearest reference's family (lineage on feature-only fingerprints:
            # a distance profile's nearest centroid need not be the nearest reference; see compare.lineage).
            cluster_family = str(self.families_[order[0]])
        else:
            cluster_family = str(self.cluster_families_[int(self.kmeans_.predict(vectors)[0])])
        tests = [weight_test(fp, ref) for ref in self.references_] if self.testable_ and fp.has_sketches else None
        common = {
            "model": fp.name,
            "nearest": self._nearest(d, order, tests),
            "threshold": {
                "alpha": self.alpha,
                "matching": {"null": EMPIRICAL_NULL, "min_agreement": MIN_AGREEMENT, "max_log10_tail": MAX_LOG10_TAIL},
                "related_distance": self.calibration_.to_dict()["threshold"],
                "related_rule": self.calibration_.note,
                "related_calibrated": self.calibration_.rule != UNCALIBRATED,
            },
            "method": self.method_.name,
            "lineage_version": __version__,
            "probe_settings": dict(fp.settings),
            "cluster": cluster_family,
            "distances": {n: float(v) for n, v in zip(self.names_, d.tolist())},
        }
        if tests is None:
            return self._family_verdict(fp, d, order, cluster_family, None, {}, common)
        logs = np.array([t.log10_p for t in tests])
        best = int(np.lexsort((d, logs))[0])  # smallest p-value, then the nearest
        log10_p = sidak_log10(float(logs[best]), len(self.references_))
        evidence = self._evidence(fp, best, tests[best])
        if log10_p < math.log10(self.alpha):
            p = format_p(p_from_log10(log10_p), log10_p)
            rule = (
                f"derived: weight test ({tests[best].group}) p={format_p(tests[best].p_value, logs[best])} against "
                f"{self.names_[best]}, {p} for the best of {len(self.references_)} references < alpha {self.alpha:g}"
            )
            paired = experts_sentence([lay.to_dict() for lay in tests[best].experts], self.names_[best])
            rule += f"; {paired}" if paired else ""
            relation = None
            fit = quantised_fit(fp, self.references_[best])
            if fit is not None:
                evidence["quantisation"] = fit.to_dict()
                formats = ", ".join(fit.formats) or "quantised"
                if fit.copy:
                    relation = QUANTISED_COPY
                    rule = (f"derived, {QUANTISED_COPY} ({formats}): its responses lie {fit.ratio:.3g}x the rounding "
                            f"noise of its quantisation from {self.names_[best]}'s (<= {fit.limit:g}); "
                            + rule.removeprefix("derived: "))  # fmt: skip
                else:
                    how = (f"its responses lie {fit.ratio:.3g}x the rounding noise of its quantisation from "
                           f"{self.names_[best]}'s (> {fit.limit:g})" if math.isfinite(fit.ratio)
                           else f"it has weight matrices {self.names_[best]} has not")  # fmt: skip
                    rule += (f"; more than a {QUANTISED_COPY} ({formats}): {how}: changed before or after quantising "
                             "(fine-tuned, or by a quantiser that also rescales weights)")
            return Verdict(
                verdict=DERIVED, derived_from=self.bases_[best], family=str(self.families_[best]),
                p_value=p_from_log10(log10_p), log10_p=log10_p, evidence=evidence, rule=rule, relation=relation,
                **common,
            )  # fmt: skip
        matched = self._matched(fp, d, log10_p, evidence, common)
        if matched is not None:
            return matched
        return self._family_verdict(fp, d, order, cluster_family, log10_p, evidence, common)

    def _matched(self, fp: Fingerprint, d: np.ndarray, log10_p: float, evidence: dict, common: dict) -> Verdict | None:
        """`derived` by the unit matching test (`lineage.compare.matching`, an empirical null) where the exact test
        was not: a suspect disguised by every symmetry at once. None when no reference passes its rule."""
        tests = [unit_matching(fp, ref) for ref in self.references_]
        passed = [j for j, m in enumerate(tests) if m is not None and m.derived]
        if not passed:
            return None
        j = min(passed, key=lambda k: (-tests[k].share, d[k]))  # the most agreement, then the nearest
        evidence = {**evidence, "matching": {"reference": self.names_[j], **tests[j].to_dict()}}
        exact = format_p(p_from_log10(log10_p), log10_p)
        rule = (f"derived ({EMPIRICAL_NULL}): {tests[j].rule()} against {self.names_[j]}; the exact weight test "
                f"did not see it ({exact} >= alpha {self.alpha:g} for the best of {len(self.references_)} references)")
        return Verdict(
            verdict=DERIVED, derived_from=self.bases_[j], family=str(self.families_[j]),
            p_value=p_from_log10(log10_p), log10_p=log10_p, evidence=evidence, rule=rule, **common,
        )  # fmt: skip

    def _nearest(self, d: np.ndarray, order: np.ndarray, tests: list[WeightTest] | None) -> list[dict]:
        out = []
        for j in order[:NEAREST]:
            entry = {"reference": self.names_[j], "family": str(self.families_[j]), "distance": float(d[j])}
            if tests is not None:
                t = tests[j]
                entry.update({"p_value": p_from_log10(t.log10_p), "log10_p": t.log10_p, "group": t.group})
            out.append(entry)
        return out

    def _family_verdict(
        self, fp: Fingerprint, d: np.ndarray, order: np.ndarray, cluster_family: str,
        log10_p: float | None, evidence: dict, common: dict,
    ) -> Verdict:  # fmt: skip
        """`related` or `unknown`, for a suspect the weight test did not call derived."""
        j = int(order[0])
        evidence["family"] = self._family_evidence(fp, j)  # the nearest reference's, which the rule below reads
        p_value = None if log10_p is None else p_from_log10(log10_p)
        not_derived = (
            f"not derived (p={format_p(p_value, log10_p)} >= {self.alpha:g})"
            if log10_p is not None
            else "no derivation test on feature-only fingerprints"
        )
        overlap = vocabulary_overlap(fp, self.references_[j]) if fp.has_sketches and self.testable_ else None
        if overlap is not None and overlap < RELATED_MIN_OVERLAP:
            reason = (
                f"the nearest reference {self.names_[j]} shares only {overlap:.0%} of the two vocabularies "
                f"(a family shares its tokenizer: at least {RELATED_MIN_OVERLAP:.0%})"
            )
        elif self.calibration_.rule == UNCALIBRATED:
            reason = f"`related` is not calibrated: {self.calibration_.note}"
        elif d[j] > self.calibration_.threshold:
            reason = f"nearest reference {self.names_[j]} at {d[j]:.4g} > family threshold " + (
                f"{self.calibration_.threshold:.4g}"
            )
        else:
            rule = f"related: {not_derived}; family distance {d[j]:.4g} to {self.names_[j]} <= " + (
                f"{self.calibration_.threshold:.4g}"
            )
            return Verdict(
                verdict=RELATED, derived_from=None, family=cluster_family, p_value=p_value, log10_p=log10_p,
                evidence=evidence, rule=rule, **common,
            )  # fmt: skip
        return Verdict(
            verdict=UNKNOWN, derived_from=None, family=UNKNOWN, p_value=p_value, log10_p=log10_p,
            evidence=evidence, rule=f"unknown: {not_derived}; {reason}", **common,
        )  # fmt: skip

    def _evidence(self, fp: Fingerprint, best: int, test: WeightTest) -> dict:
        ref = self.references_[best]
        return {
            "reference": self.names_[best],
            "weight": test.to_dict(),
            "circuits": circuit_similarities(fp, ref),
            "family": self._family_evidence(fp, best),
            "basis": basis(fp, ref),
        }

    def _family_evidence(self, fp: Fingerprint, j: int) -> dict:
        return family_evidence(fp, self.references_[j])

    def _calibration(self, reference_distances: np.ndarray) -> Calibration:
        return unknown_threshold(self.unknown, reference_distances, self.families_, self.method_, self.related_alpha)
