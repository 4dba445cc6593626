"""The options every job over models shares (scan, classify, distance, verify, packs, store): how
fingerprints are obtained, compared and classified, and at which levels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.compare import DEFAULT_METHOD, METHODS
from lineage.decide.kmeans import FamilyClassifier, check_unknown_rule
from lineage.decide.verdict import DEFAULT_ALPHA
from lineage.errors import ClassificationError
from lineage.fingerprint.cache import FingerprintCache, ModelOutcome
from lineage.jobs.executors import ExecutorOptions
from lineage.jobs.manifest import Manifest, read_manifest

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

#: `progress(done, total, model_name)`, called after each model is fingerprinted or loaded.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ScanOptions:
    """How to obtain, compare and classify fingerprints (shared by scan, classify and distance).

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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        if self.fdr is not None and not 0.0 < self.fdr < 1.0:
            raise ValueError("fdr must be in (0, 1)")
        check_unknown_rule(self.unknown)

    def probe_options(self) -> FingerprintOptions:
        """The probe settings for model folders (imports the probing stack: only called for folders)."""
        if self.fingerprint is not None:
            return self.fingerprint
        from lineage.fingerprint.pipeline import FingerprintOptions

        return FingerprintOptions(device=self.device, key=self.key)

    def cache(self) -> FingerprintCache | None:
        return FingerprintCache(self.cache_dir) if self.use_cache else None

    def classifier(self, alpha: float | None = None) -> FamilyClassifier:
        return FamilyClassifier(
            method=self.method,
            unknown=self.unknown,
            alpha=self.alpha if alpha is None else alpha,
            random_state=self.random_state,
        )

    def references(self, reference: str | Path | Manifest) -> Manifest:
        """A reference set (manifest CSV, pack folder, `builtin`, or a parsed manifest) as a manifest."""
        return reference if isinstance(reference, Manifest) else read_manifest(reference, verify_pack=self.verify_packs)


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
