"""The job behind `lineage scan`, as a library function that never prints (`classify` and `distance` over a
command line's paths are `lineage.jobs.paths`, the shared options `lineage.jobs.options`).

`scan` fingerprints every model it is given (a manifest's rows, or the models of folders), classifies the
suspects against the references (the manifest's own `role=base` rows, or a separate reference set: a
manifest, a pack or `builtin`) and scores the verdicts against whatever labels the rows carry (none is
fine: an unlabelled scan gives verdicts and no scores). With `fdr` the suspects' p-values then go through
Benjamini-Hochberg (`lineage.jobs.levels`). A model that cannot be fingerprinted becomes a row with its
error text and the scan goes on; only a scan left without a single usable reference stops (there is
nothing to classify against). Fingerprints come from the files a manifest names, from the cache
(`lineage.fingerprint.obtain`), or are computed and cached, so a second scan with nothing changed
fingerprints nothing.

The full pairwise distance matrix (the report's heat-map and map) is computed only when asked for: a scan
of 10,000 models needs 10,000 x R distances to classify, not 10,000 x 10,000.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lineage.compare import get_method
from lineage.data import DEMO_MANIFEST
from lineage.decide.kmeans import ClassificationRun
from lineage.decide.verdict import UNKNOWN, Verdict
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint
from lineage.fingerprint.device import check_device
from lineage.fingerprint.gather import ModelOutcome
from lineage.fingerprint.inputs import expand_inputs
from lineage.fingerprint.obtain import CACHED, FINGERPRINTED, LOADED
from lineage.io.names import unique_names
from lineage.jobs.levels import apply_fdr, level_summary
from lineage.jobs.options import Progress, ScanOptions, fitted_classifier
from lineage.jobs.paths import ClassifyResult, classify_paths, distance_paths
from lineage.refs.manifest import Manifest, ManifestRow, manifest_of_models
from lineage.refs.open import open_references
from lineage.report.rows import error_row, verdict_row
from lineage.report.summary import summarize

#: The demo's recipe (a scan of the built-in catalog with neither a method nor an unknown rule chosen): the
#: published TensorGuard fingerprints hold only the paper's 15 features, so no derivation test can run on
#: them, and the paper's own recipe is the one that reproduces its table.
DEMO_METHOD, DEMO_UNKNOWN = "tensorguard", "off"

#: What this module offers; `ScanOptions`, `classify_paths` and `distance_paths` live in `lineage.jobs.options`
#: and `lineage.jobs.paths` and are re-exported here, where callers have always found them.
__all__ = ["ClassifyResult", "Progress", "ScanOptions", "ScanResult", "classify_paths", "distance_paths", "scan"]


@dataclass
class ScanResult:
    """What `scan` found.

    Attributes:
        manifest: the manifest scanned (the models of the folders given, when no manifest was).
        method: the method's name.
        outcomes: one per model: the references first when they came from a separate reference set, else
            one per manifest row, in order (`key` is the row).
        run: the classification (references and suspects).
        rows: one JSON-ready object per model scanned (`lineage.report.rows`: every model, failed ones
            with `status` `error`): `classify`'s keys plus `true_family`, `true_base`, `derivation`, `role`,
            `cluster_family`; the references' own rows too when they are the manifest's.
        summary: the scores (see `lineage.report.summary.summarize`), the levels and the scan's facts.
        reference_names: the references' names.
        shown: the outcomes of `rows`, in order (a path that held no model has a row and no outcome).
        reference_outcomes: the references' outcomes.
    """

    manifest: Manifest
    method: str
    outcomes: list[ModelOutcome]
    run: ClassificationRun
    rows: list[dict]
    summary: dict
    reference_names: list[str] = field(default_factory=list)
    shown: list[ModelOutcome] = field(default_factory=list)
    reference_outcomes: list[ModelOutcome] = field(default_factory=list)
    _matrix: np.ndarray | None = field(default=None, repr=False)

    @property
    def failed(self) -> list[str]:
        """Names of the models that could not be fingerprinted."""
        return [r["model"] for r in self.rows if r.get("error") is not None]

    @property
    def mapped(self) -> list[ModelOutcome]:
        """The outcomes that have a fingerprint, in the order of `fingerprints` and `distance_matrix`."""
        return [o for o in self.outcomes if o.fingerprint is not None]

    @property
    def fingerprints(self) -> list[Fingerprint]:
        """The fingerprints obtained (references and suspects), named apart when two share a name."""
        outcomes = self.mapped
        names = unique_names([o.fingerprint.name for o in outcomes], [o.path for o in outcomes])
        return [o.fingerprint if o.fingerprint.name == n else replace(o.fingerprint, name=n)
                for o, n in zip(outcomes, names)]  # fmt: skip

    def distance_matrix(self) -> tuple[list[str], np.ndarray]:
        """Names and the full pairwise distance matrix of every fingerprinted model (computed once)."""
        fps = self.fingerprints
        if self._matrix is None:
            self._matrix = get_method(self.method).distances(fps, fps)
        return [fp.name for fp in fps], self._matrix


def scan(
    manifest: str | Path | Manifest | Sequence[str | Path] | None = None,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
    references: str | Path | Manifest | None = None,
) -> ScanResult:
    """Fingerprint and classify every model given, and score the verdicts where labels say what is right.

    Args:
        manifest: a manifest CSV (or a parsed one), or a list of model paths (folders, folders of folders,
            GGUF or fingerprint files: an unlabelled batch); the built-in demo catalog (58 published
            TensorGuard fingerprints) when None.
        options: scan settings.
        progress: called as `progress(done, total, name)` after each model.
        references: the known models (manifest CSV, pack folder, `builtin`): every model given is then a
            suspect. When None the manifest's own references (`role=base` rows) are used.

    Returns:
        The result; failed models are rows with an `error`.

    Raises:
        ManifestError: the manifest is unreadable or has no references.
        ClassificationError: no reference could be fingerprinted, or a batch of models without references.
        DeviceError: the device asked for is not available.

    Example:
        >>> result = scan(options=ScanOptions(method="tensorguard", unknown="off"))
        >>> result.summary["family_accuracy"]["correct"], result.summary["family_accuracy"]["total"]
        (47, 50)
    """
    options = options or ScanOptions()
    check_device(options.device)
    start = time.perf_counter()
    manifest, unreadable = _scanned(manifest)
    job = _gathered(manifest, references, options, progress)
    classifier = fitted_classifier(options, job.references)
    good = [o for o in job.suspects if o.ok]
    run = classifier.classify([o.fingerprint for o in good])
    if options.fdr is not None:
        rejudge = _rejudge(options, job.references, [o.fingerprint for o in good])
        run = replace(run, results=apply_fdr(run.results, options.fdr, rejudge))
    verdicts = dict(zip(map(id, good), run.results))
    if job.own:  # the manifest's references are rows of the scan, with their own verdicts
        verdicts |= dict(zip(map(id, [o for o in job.references if o.ok]), run.reference_results))
    rows = [_row(o, verdicts.get(id(o))) for o in job.shown] + [_unreadable_row(r, e) for r, e in unreadable]
    summary = _summary(manifest, references, options, run, job, rows, start)
    names = [o.key.name for o in job.references]
    return ScanResult(manifest, options.method, job.outcomes, run, rows, summary, names, job.shown, job.references)


def _summary(
    manifest: Manifest,
    references: object,
    options: ScanOptions,
    run: ClassificationRun,
    job: _Job,
    rows: list[dict],
    start: float,
) -> dict:
    """The scan's summary: what was scanned against what, the scores of the labelled rows, the levels."""
    refs = [o.key for o in job.references]
    summary = {
        "method": options.method,
        "description": run.description,
        "manifest": str(manifest.path) if manifest.path != Path(".") else None,
        "references_from": str(references) if references is not None else None,
        **summarize(rows, [r.name for r in refs] if job.own else [], [r.family or r.name for r in refs],
                    [r.base or r.name for r in refs]),  # fmt: skip
        "threshold": run.calibration.to_dict(),
        "level": level_summary(run.results, options.alpha, options.fdr),
        **_counts(job.outcomes, start),
    }
    summary["references"] = len(refs)  # also when they come from a reference set, not from the rows
    summary["notes"] = _notes(summary, rows, _reference_rows(job))
    return summary


@dataclass(frozen=True)
class _Job:
    """The outcomes of a scan: all (in gathering order), the references', the suspects', and the rows shown
    (every manifest row when the references are the manifest's own, `own`; else the suspects)."""

    outcomes: list[ModelOutcome]
    references: list[ModelOutcome]
    suspects: list[ModelOutcome]
    shown: list[ModelOutcome]
    own: bool


def _gathered(
    manifest: Manifest, references: str | Path | Manifest | None, options: ScanOptions, progress: Progress | None
) -> _Job:
    """Fingerprint the references and the suspects in one gather (an executor spreads them all)."""
    if references is None:
        if not manifest.references:
            where = f"{manifest.path}: no row has role 'base'" if manifest.rows else "no model was found"
            raise ClassificationError(
                f"{where}: nothing to classify against; mark the known bases with role=base, or give --reference "
                "(a manifest, a reference pack or builtin)"
            )
        ref_names = {r.name for r in manifest.references}
        outcomes = _gather([(r.name, r.path, r) for r in manifest.rows], options, progress)
        refs = [o for o in outcomes if o.key.name in ref_names]
        return _Job(outcomes, refs, [o for o in outcomes if o.key.name not in ref_names], outcomes, True)
    ref_rows = list(options.references(references).references)
    outcomes = _gather([(r.name, r.path, r) for r in (*ref_rows, *manifest.rows)], options, progress)
    suspects = outcomes[len(ref_rows) :]
    return _Job(outcomes, outcomes[: len(ref_rows)], suspects, suspects, False)


def _reference_rows(job: _Job) -> set[str]:
    """The names of the rows that are references (none when the references came from elsewhere)."""
    return {o.key.name for o in job.references} if job.own else set()


def _gather(items: list, options: ScanOptions, progress: Progress | None) -> list[ModelOutcome]:
    return options.source.gather(items, progress)


def _scanned(
    given: str | Path | Manifest | Sequence[str | Path] | None,
) -> tuple[Manifest, list[tuple[ManifestRow, str]]]:
    """The manifest to scan, and the paths given that hold no model (rows of their own, failed)."""
    if isinstance(given, Manifest):
        return given, []
    if given is None or isinstance(given, (str, Path)):
        source = given if given is not None else DEMO_MANIFEST
        return open_references(source, require_references=False), []
    return manifest_of_models(expand_inputs(list(given)))


def _rejudge(options: ScanOptions, refs: list[ModelOutcome], suspects: list[Fingerprint]):  # noqa: ANN202
    """`rejudge(indices, alpha)` for `apply_fdr`: those suspects judged by a classifier at level `alpha`."""

    def rejudge(indices: list[int], alpha: float) -> list[Verdict]:
        ok = [o for o in refs if o.ok]
        clf = options.classifier(alpha=alpha).fit(
            [o.fingerprint for o in ok], [o.key.family or o.key.name for o in ok], [o.key.base for o in ok]
        )
        return clf.predict([suspects[i] for i in indices])

    return rejudge


def _counts(outcomes: list[ModelOutcome], start: float) -> dict:
    hows = [o.how for o in outcomes]
    return {
        "fingerprinted": hows.count(FINGERPRINTED),
        "cached": hows.count(CACHED),
        "loaded": hows.count(LOADED),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _notes(summary: dict, rows: list[dict], references: set[str]) -> list[str]:
    """What a reader must know to read the verdicts right (a scan of feature-only fingerprints)."""
    if summary["level"]["tested"] or not any(r.get("error") is None for r in rows):
        return []
    note = (
        "no derivation test ran: these fingerprints hold only the TensorGuard paper's 15 features (no sketches, "
        "no weight responses), so 'related to F' says only that a model falls in the K-Means cluster of an F "
        "base, a resemblance of summary statistics, never evidence of derivation"
    )
    wrong = [r["model"] for r in rows if r.get("error") is None and r.get("true_family") not in (None, UNKNOWN)
             and r.get("family") not in (r.get("true_family"), None)]  # fmt: skip
    if wrong:
        refs = [w for w in wrong if w in references]
        shown = ", ".join(sorted(wrong, key=lambda w: w not in references)[:4]) + (", ..." if len(wrong) > 4 else "")
        who = f"{len(wrong) - len(refs)} suspect(s)" + (f" and {len(refs)} reference(s)" if refs else "")
        note += (
            f"; {who} fall in another family's cluster ({shown}): the recipe's own error rate (the paper's "
            "table has the same), not a finding about those models"
        )
    return [note]


def _row(outcome: ModelOutcome, verdict: Verdict | None) -> dict:
    row: ManifestRow = outcome.key
    if verdict is not None:
        out = verdict_row(verdict, row.path)
        # `base` and `distance` are the keys the scores read (the derived-from base, the nearest distance).
        out.update(base=verdict.derived_from, distance=verdict.distance, cluster_family=verdict.cluster)
    else:
        out = error_row(row.name, row.path, outcome.error or "no verdict")
        out.update(base=None, cluster_family=None)
    out.update(true_family=row.family, true_base=row.base, derivation=row.derivation, role=row.role)
    return out


def _unreadable_row(row: ManifestRow, error: str) -> dict:
    out = error_row(row.name, row.path, error)
    out.update(base=None, cluster_family=None, true_family=None, true_base=None, derivation=None, role=None)
    return out
