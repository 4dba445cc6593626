"""The jobs behind `lineage scan`, `classify` and `distance`, as library functions that never print.

`scan` fingerprints every model of a manifest, classifies the suspects against the references and scores
the verdicts against the manifest's labels. A model that cannot be fingerprinted becomes a row with its
error text and the scan goes on; only a scan left without a single usable reference stops (there is
nothing to classify against). Fingerprints come from the files a manifest names, from the cache
(`lineage.fingerprint.cache`), or are computed and cached, so a second scan with nothing changed fingerprints nothing.

The full pairwise distance matrix (the report's heat-map and map) is computed only when asked for: a scan
of 10,000 models needs 10,000 x R distances to classify, not 10,000 x 10,000.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lineage.compare import DEFAULT_METHOD, METHODS, get_method
from lineage.decide.kmeans import ClassificationRun, FamilyClassifier, check_unknown_rule
from lineage.decide.verdict import DEFAULT_ALPHA, Verdict
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.fingerprint.cache import (
    CACHED,
    FINGERPRINTED,
    LOADED,
    FingerprintCache,
    ModelOutcome,
    expand_inputs,
)
from lineage.jobs.executors import ExecutorOptions, gather
from lineage.jobs.manifest import DEMO_MANIFEST, Manifest, ManifestRow, read_manifest
from lineage.report.summary import summarize

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
        device: where probes run for model folders ("auto", "cpu", "cuda", "cuda:N").
        fingerprint: probe settings for model folders; defaults on `device` when None.
        cache_dir: the fingerprint cache folder; the default one when None.
        use_cache: False fingerprints every folder again and stores nothing.
        random_state: K-Means seed.
        executor: where model folders are fingerprinted (serial, local processes, a Ray cluster).
    """

    method: str = DEFAULT_METHOD
    unknown: str | float = "calibrated"
    alpha: float = DEFAULT_ALPHA
    device: str = "auto"
    fingerprint: FingerprintOptions | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    random_state: int = 0
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError("alpha must be in (0, 0.5)")
        check_unknown_rule(self.unknown)

    def probe_options(self) -> FingerprintOptions:
        """The probe settings for model folders (imports the probing stack: only called for folders)."""
        if self.fingerprint is not None:
            return self.fingerprint
        from lineage.fingerprint.pipeline import FingerprintOptions

        return FingerprintOptions(device=self.device)

    def cache(self) -> FingerprintCache | None:
        return FingerprintCache(self.cache_dir) if self.use_cache else None

    def classifier(self) -> FamilyClassifier:
        return FamilyClassifier(
            method=self.method, unknown=self.unknown, alpha=self.alpha, random_state=self.random_state
        )


@dataclass
class ScanResult:
    """What `scan` found.

    Attributes:
        manifest: the manifest scanned.
        method: the method's name.
        outcomes: one per manifest row, in order (`key` is the row).
        run: the classification (references and suspects).
        rows: one JSON-ready object per manifest row: `classify`'s keys plus `true_family`, `true_base`,
            `derivation`, `role`, `cluster_family` and `error`.
        summary: the scores (see `lineage.report.summary.summarize`) and the scan's facts.
    """

    manifest: Manifest
    method: str
    outcomes: list[ModelOutcome]
    run: ClassificationRun
    rows: list[dict]
    summary: dict
    _matrix: np.ndarray | None = field(default=None, repr=False)

    @property
    def failed(self) -> list[str]:
        """Names of the models that could not be fingerprinted."""
        return [o.name for o in self.outcomes if not o.ok]

    @property
    def fingerprints(self) -> list[Fingerprint]:
        """The fingerprints obtained, in manifest order."""
        return [o.fingerprint for o in self.outcomes if o.fingerprint is not None]

    @property
    def reference_names(self) -> list[str]:
        return [r.model for r in self.run.reference_results]

    def distance_matrix(self) -> tuple[list[str], np.ndarray]:
        """Names and the full pairwise distance matrix of every fingerprinted model (computed once)."""
        fps = self.fingerprints
        if self._matrix is None:
            self._matrix = get_method(self.method).distances(fps, fps)
        return [fp.name for fp in fps], self._matrix


@dataclass(frozen=True)
class ClassifyResult:
    """What `classify_paths` found: verdicts for the suspects that could be fingerprinted, and failures."""

    results: list[Verdict]
    run: ClassificationRun
    failures: list[ModelOutcome]


def scan(
    manifest: str | Path | Manifest | None = None,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Fingerprint, classify and score every model of a manifest.

    Args:
        manifest: a manifest CSV (or a parsed one); the built-in demo catalog (58 published TensorGuard
            fingerprints) when None.
        options: scan settings.
        progress: called as `progress(done, total, name)` after each model.

    Returns:
        The result; failed models are rows with an `error`.

    Raises:
        ManifestError: the manifest is unreadable or has no references.
        ClassificationError: no reference could be fingerprinted.

    Example:
        >>> result = scan(options=ScanOptions(method="tensorguard", unknown="off"))
        >>> result.summary["family_accuracy"]["correct"], result.summary["family_accuracy"]["total"]
        (47, 50)
    """
    options = options or ScanOptions()
    start = time.perf_counter()
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest if manifest is not None else DEMO_MANIFEST)
    items = [(row.name, row.path, row) for row in manifest.rows]
    outcomes = gather(items, options.probe_options, options.cache(), progress, options.executor)

    ref_names = {r.name for r in manifest.references}
    refs = [o for o in outcomes if o.name in ref_names and o.ok]
    suspects = [o for o in outcomes if o.name not in ref_names and o.ok]
    if not refs:
        first = next((o.error for o in outcomes if o.name in ref_names), "no references")
        raise ClassificationError(f"no reference model could be fingerprinted, nothing to classify against ({first})")
    classifier = options.classifier().fit(
        [o.fingerprint for o in refs], [o.key.family for o in refs], [o.key.base for o in refs]
    )
    run = classifier.classify([o.fingerprint for o in suspects])

    verdicts = {v.model: v for v in (*run.reference_results, *run.results)}
    rows = [_row(o, verdicts.get(o.name)) for o in outcomes]
    scores = summarize(
        rows,
        reference_names=ref_names,
        # Scored against what the manifest intends: a base that failed makes its family unreachable, and
        # that must show as lost accuracy, not turn its derivatives into expected unknowns.
        reference_families=[r.family for r in manifest.references],
        reference_bases=[r.base or r.name for r in manifest.references],
    )
    hows = [o.how for o in outcomes]
    summary = {
        "method": options.method,
        "description": run.description,
        "manifest": str(manifest.path),
        **scores,
        "threshold": run.calibration.to_dict(),
        "fingerprinted": hows.count(FINGERPRINTED),
        "cached": hows.count(CACHED),
        "loaded": hows.count(LOADED),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return ScanResult(manifest, options.method, outcomes, run, rows, summary)


def classify_paths(
    suspects: Sequence[str | Path],
    reference: str | Path | Manifest,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
) -> ClassifyResult:
    """Classify models (folders, folders of folders, fingerprint files) against a manifest's bases.

    Args:
        suspects: the paths given on the command line.
        reference: the manifest whose references (role=base rows) are the known models.
        options: settings.
        progress: called after each model (references first, then suspects).

    Returns:
        Verdicts of the suspects, and the models (references included) that failed.

    Raises:
        ManifestError: bad manifest.
        ClassificationError: no reference could be fingerprinted.
    """
    options = options or ScanOptions()
    manifest = reference if isinstance(reference, Manifest) else read_manifest(reference)
    items = [(row.name, row.path, row, None) for row in manifest.references]
    items += [(None, path, None, problem) for path, problem in expand_inputs(suspects)]
    outcomes = _obtain(items, options, progress)
    refs = [o for o in outcomes[: len(manifest.references)] if o.ok]
    found = [o for o in outcomes[len(manifest.references) :] if o.ok]
    if not refs:
        raise ClassificationError(f"no reference of {manifest.path} could be fingerprinted ({outcomes[0].error})")
    classifier = options.classifier().fit(
        [o.fingerprint for o in refs], [o.key.family for o in refs], [o.key.base for o in refs]
    )
    run = classifier.classify([o.fingerprint for o in found])
    return ClassifyResult(run.results, run, [o for o in outcomes if not o.ok])


def distance_paths(
    paths: Sequence[str | Path], options: ScanOptions | None = None, progress: Progress | None = None
) -> tuple[list[str], np.ndarray, list[ModelOutcome]]:
    """The pairwise distance matrix of models (folders, folders of folders, fingerprint files).

    Returns:
        `(names, matrix [n, n], failures)`; names are made unique (`name#2`) when two models share one.
    """
    options = options or ScanOptions()
    outcomes = _obtain([(None, p, None, e) for p, e in expand_inputs(paths)], options, progress)
    fps = [o.fingerprint for o in outcomes if o.ok]
    if not fps:
        raise ClassificationError("no model could be fingerprinted: nothing to compare")
    names: list[str] = []
    for fp in fps:
        name, n = fp.name, 1
        while name in names:
            n += 1
            name = f"{fp.name}#{n}"
        names.append(name)
    return names, get_method(options.method).distances(fps, fps), [o for o in outcomes if not o.ok]


def _obtain(
    items: list[tuple[str | None, Path, object, str | None]], options: ScanOptions, progress: Progress | None
) -> list[ModelOutcome]:
    """`gather` over `(name, path, key, error)` items; an error found while expanding the
    command line's paths (a folder with no model) becomes a failed outcome without being gathered."""
    todo = [(name, path, key) for name, path, key, error in items if error is None]
    gathered = iter(gather(todo, options.probe_options, options.cache(), progress, options.executor))
    return [
        next(gathered) if error is None else ModelOutcome(Path(path).name, Path(path), None, None, error, 0.0, key)
        for _, path, key, error in items
    ]


def _row(outcome: ModelOutcome, verdict: Verdict | None) -> dict:
    row: ManifestRow = outcome.key
    if verdict is not None:
        out = verdict.to_dict()
        # `base` and `distance` are the keys the scores read (the derived-from base, the nearest distance).
        out.update(base=verdict.derived_from, distance=verdict.distance, cluster_family=verdict.cluster)
    else:
        out = {"model": row.name, "verdict": None, "family": None, "base": None, "derived_from": None,
               "distance": None, "p_value": None, "cluster_family": None, "distances": {}}  # fmt: skip
    out.update(true_family=row.family, true_base=row.base, derivation=row.derivation, role=row.role,
               error=outcome.error)  # fmt: skip
    return out
