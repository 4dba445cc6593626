"""The options every job over models shares (scan, classify, distance, verify, evaluations): how fingerprints
are obtained (a `lineage.fingerprint.source.FingerprintSource`), compared and classified (the parameters of
`lineage.decide.kmeans.FamilyClassifier`), at which levels, and against which references."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.compare import DEFAULT_METHOD, METHODS
from lineage.decide.kmeans import FamilyClassifier
from lineage.decide.unknown import check_unknown_rule
from lineage.decide.verdict import DEFAULT_ALPHA
from lineage.errors import ClassificationError
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions
from lineage.fingerprint.gather import ModelOutcome
from lineage.fingerprint.source import FingerprintSource, Progress
from lineage.refs.manifest import Manifest
from lineage.refs.open import open_references

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

__all__ = ["Progress", "ScanOptions", "fitted_classifier"]


@dataclass(frozen=True)
class ScanOptions:
    """How to obtain, compare and classify fingerprints (shared by scan, classify, distance, verify).

    The fingerprint settings (`device` to `key`, but `method`) are the job's `source`; `method`, `unknown`,
    `alpha` and `random_state` are the classifier's (`classifier()`); `verify_packs` is how references are
    opened (`references()`). They are one flat object so that a command line maps onto it field by field.

    Attributes:
        method: `lineage` or `tensorguard`.
        unknown: "calibrated", "paper", "off" or a fixed threshold (see `FamilyClassifier`).
        alpha: the derivation test's level (the share of unrelated suspects it may call derived).
        fdr: Benjamini-Hochberg's level across a scan's suspects, on top of `alpha` (None: alpha alone).
        device: where probes run for model folders ("auto", "cpu", "cuda", "cuda:N").
        fingerprint: probe settings for model folders; defaults on `device` when None.
        cache_dir: the fingerprint cache folder; the default one when None.
        use_cache: False fingerprints every folder again and stores nothing.
        random_state: K-Means seed.
        executor: where model folders are fingerprinted (serial, local processes, a Ray cluster).
        verify_packs: check a reference pack's files against their sha256 before using it.
        key: the probe key of model folders (`FingerprintOptions.key`); None is the public key.
        verify_weights: key the cache by the sha256 of the weight bytes, read in full (`FingerprintCache`).
    """

    method: str = DEFAULT_METHOD
    unknown: str | float = "calibrated"
    alpha: float = DEFAULT_ALPHA
    fdr: float | None = None
    device: str = "auto"
    fingerprint: FingerprintOptions | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    random_state: int = 0
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    verify_packs: bool = True
    key: str | None = field(default=None, repr=False)
    verify_weights: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        if self.fdr is not None and not 0.0 < self.fdr < 1.0:
            raise ValueError("fdr must be in (0, 1)")
        check_unknown_rule(self.unknown)

    @property
    def source(self) -> FingerprintSource:
        """Where the job's fingerprints come from: probe settings, cache, executor."""
        return FingerprintSource(
            self.device, self.fingerprint, self.cache_dir, self.use_cache, self.executor, self.key, self.verify_weights
        )

    def probe_options(self) -> FingerprintOptions:
        """The probe settings for model folders (imports the probing stack: only called for folders)."""
        return self.source.probe_options()

    def cache(self) -> FingerprintCache | None:
        """The fingerprint cache, None when `use_cache` is off."""
        return self.source.cache()

    def classifier(self, alpha: float | None = None) -> FamilyClassifier:
        return FamilyClassifier(
            method=self.method,
            unknown=self.unknown,
            alpha=self.alpha if alpha is None else alpha,
            random_state=self.random_state,
        )

    def references(self, reference: str | Path | Manifest) -> Manifest:
        """A reference set (manifest CSV, pack folder, `builtin`, or a parsed manifest) as a manifest."""
        return open_references(reference, verify=self.verify_packs)


def fitted_classifier(options: ScanOptions, outcomes: list[ModelOutcome]) -> FamilyClassifier:
    """The classifier of `options` fitted on the references that could be fingerprinted (`outcomes`).

    Raises:
        ClassificationError: none could.
    """
    refs = [o for o in outcomes if o.ok]
    if not refs:
        first = outcomes[0].error if outcomes else "no references"
        raise ClassificationError(f"no reference model could be fingerprinted, nothing to classify against ({first})")
    return options.classifier().fit(
        [o.fingerprint for o in refs], [o.key.family or o.key.name for o in refs], [o.key.base for o in refs]
    )
