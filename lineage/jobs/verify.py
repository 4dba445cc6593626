"""`lineage verify` as a library function: the models fingerprinted and classified once, each verdict paired
with what its model declares (`lineage.verify`: the declarations, the rule, the ML-BOM)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lineage.fingerprint.gather import error_text
from lineage.io.declared import card_licence
from lineage.jobs.options import ScanOptions
from lineage.jobs.paths import classify_paths
from lineage.refs.manifest import Manifest
from lineage.verify.declarations import ReferenceIndex, declared_lineage
from lineage.verify.outcome import VerifyResult, error_outcome, judge, reference_itself, weights_view


def verify_paths(
    models: Sequence[str | Path],
    reference: str | Path | Manifest,
    options: ScanOptions | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    base: str | Path | None = None,
) -> VerifyResult:
    """Check the declared lineage of models against what their weights say (the rule: `lineage.verify.outcome`).

    Args:
        models: model folders, folders of them, GGUF files, fingerprint files (which declare nothing).
        reference: the manifest CSV (or pack, or `builtin`, or a parsed manifest) whose references are the
            known bases (its `hub_id` column names them).
        options: the scan settings; defaults when None.
        progress: as for `classify_paths`.
        base: the base model of LoRA adapter folders (else found by the references' `hub_id`).

    Returns:
        One outcome per model given, in order (status `error` for one that could not be read), and the
        errors of every model that failed, references included.

    Raises:
        ManifestError: bad manifest. ClassificationError: no reference could be fingerprinted.

    Example:
        >>> result = verify_paths(["suspects/"], "models_manifest.csv")  # doctest: +SKIP
        >>> [(o.model, o.status) for o in result.outcomes]  # doctest: +SKIP
        [('my-finetune', 'consistent')]
    """
    options = options or ScanOptions()
    manifest = options.references(reference)
    index = ReferenceIndex(manifest)
    result = classify_paths(models, manifest, options, progress, base=base)
    verdicts = dict(zip(map(id, [o for o in result.suspects if o.ok]), result.results))
    refs = [(row, o.fingerprint) for row, o in zip(manifest.references, result.references) if o.ok]
    errors = [(f.name, f.error or "failed") for f in result.failures]
    licences = {r.name: r.license for r in manifest.rows}
    outcomes = []
    for o in result.suspects:
        if not o.ok:
            outcomes.append(error_outcome(o.name, o.path, o.error or "failed"))
            continue
        try:
            declaration = declared_lineage(o.path, index)
            licence = card_licence(o.path)
        except Exception as exc:  # noqa: BLE001 - one unreadable card is that model's error, not the run's
            errors.append((o.name, error_text(exc)))
            outcomes.append(error_outcome(o.name, o.path, error_text(exc)))
            continue
        verdict = verdicts[id(o)]
        itself = reference_itself(o.fingerprint, verdict, refs)
        outcome = judge(verdict.model, o.path, declaration, weights_view(verdict), index, itself)
        base = itself.name if itself is not None else outcome.weights.derived_from
        inherited = licences.get(base) if base else None
        outcomes.append(replace(outcome, license=licence, inherited_license=inherited))
    return VerifyResult(outcomes, errors, {r.name: r.hub_id for r in manifest.references})
