"""`classify` and `distance` over the paths of a command line, as library functions that never print.

The paths are expanded (`lineage.fingerprint.inputs.expand_inputs`: folders of models are batches), every
model is fingerprinted (or loaded, or taken from the cache), models that share a name are told apart by
their folders, and each gets a row: its verdict, or its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lineage.compare import get_method
from lineage.decide.kmeans import ClassificationRun
from lineage.decide.verdict import Verdict
from lineage.errors import ClassificationError
from lineage.fingerprint.device import check_device
from lineage.fingerprint.gather import ModelOutcome
from lineage.fingerprint.inputs import expand_inputs
from lineage.io.adapter_base import adapter_bases
from lineage.io.names import model_name, unique_names
from lineage.jobs.options import Progress, ScanOptions, fitted_classifier
from lineage.refs.manifest import Manifest
from lineage.report.rows import error_row, verdict_row


@dataclass(frozen=True)
class ClassifyResult:
    """What `classify_paths` found.

    Attributes:
        results: verdicts of the suspects that could be fingerprinted, in input order.
        run: the classification.
        failures: the models (references included) that failed.
        rows: one row per suspect given, in input order, failed ones included (`lineage.report.rows`).
        suspects: one outcome per suspect given, aligned with `rows`.
        references: one outcome per reference, in the manifest's order.
    """

    results: list[Verdict]
    run: ClassificationRun
    failures: list[ModelOutcome]
    rows: list[dict] = field(default_factory=list)
    suspects: list[ModelOutcome] = field(default_factory=list)
    references: list[ModelOutcome] = field(default_factory=list)


def classify_paths(
    suspects: Sequence[str | Path],
    reference: str | Path | Manifest,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
    base: str | Path | None = None,
) -> ClassifyResult:
    """Classify models (folders, folders of folders, fingerprint files) against a manifest's bases.

    Args:
        suspects: the paths given on the command line.
        reference: the manifest (CSV, pack folder, `builtin`, or parsed) whose references are the known models.
        options: settings.
        progress: called after each model (references first, then suspects).
        base: the base model of LoRA adapter folders; else each finds its base among the references by hub id
            (`lineage.io.adapter_base`).

    Returns:
        Verdicts of the suspects, the models (references included) that failed, and one row per suspect
        given (failed ones included), named apart when two share a name.

    Raises:
        ManifestError: bad manifest.
        ClassificationError: no reference could be fingerprinted.
        DeviceError: the device asked for is not available.
    """
    options = options or ScanOptions()
    check_device(options.device)
    manifest = options.references(reference)
    items = [(row.name, row.path, row, None) for row in manifest.references]
    items += [(None, path, None, problem) for path, problem in expand_inputs(suspects)]
    with adapter_bases(base, manifest.adapter_bases()):
        outcomes = _obtain(items, options, progress)
    refs, given = outcomes[: len(manifest.references)], _named_apart(outcomes[len(manifest.references) :])
    found = [o for o in given if o.ok]
    run = fitted_classifier(options, refs).classify([o.fingerprint for o in found])
    verdicts = dict(zip(map(id, found), run.results))
    rows = [verdict_row(verdicts[id(o)], o.path) if o.ok else error_row(o.name, o.path, o.error) for o in given]
    return ClassifyResult(run.results, run, [o for o in outcomes if not o.ok], rows, given, refs)


def _named_apart(outcomes: list[ModelOutcome]) -> list[ModelOutcome]:
    """Outcomes whose models share a name renamed after their folders (`lineage.io.names.unique_names`)."""
    names = unique_names([o.name for o in outcomes], [o.path for o in outcomes])
    out = []
    for o, name in zip(outcomes, names):
        if name != o.name:
            fp = replace(o.fingerprint, name=name) if o.fingerprint is not None else None
            o = replace(o, name=name, fingerprint=fp)
        out.append(o)
    return out


def distance_paths(
    paths: Sequence[str | Path], options: ScanOptions | None = None, progress: Progress | None = None
) -> tuple[list[str], np.ndarray, list[ModelOutcome]]:
    """The pairwise distance matrix of models (folders, folders of folders, fingerprint files).

    Returns:
        `(names, matrix [n, n], failures)`; names are made unique (`org/name`, or `name#2` for one path
        given twice) when two models share one.
    """
    options = options or ScanOptions()
    check_device(options.device)
    outcomes = _named_apart(_obtain([(None, p, None, e) for p, e in expand_inputs(paths)], options, progress))
    fps = [o.fingerprint for o in outcomes if o.ok]
    if not fps:
        raise ClassificationError("no model could be fingerprinted: nothing to compare")
    return [fp.name for fp in fps], get_method(options.method).distances(fps, fps), [o for o in outcomes if not o.ok]


def _obtain(
    items: list[tuple[str | None, Path, object, str | None]], options: ScanOptions, progress: Progress | None
) -> list[ModelOutcome]:
    """`gather` over `(name, path, key, error)` items; an error found while expanding the
    command line's paths (a folder with no model) becomes a failed outcome without being gathered."""
    todo = [(name, path, key) for name, path, key, error in items if error is None]
    gathered = iter(options.source.gather(todo, progress))
    return [
        next(gathered) if error is None else ModelOutcome(model_name(path), Path(path), None, None, error, 0.0, key)
        for _, path, key, error in items
    ]
