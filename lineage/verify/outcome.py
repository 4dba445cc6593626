"""Declared lineage against the weights' verdict: one outcome per model, and the job that computes them.

The rule, per model (D = the declared ids resolved to lineages, see `lineage.verify.declarations`; the
weights' verdict from `lineage.jobs.scan.classify_paths`):

- `consistent`: the weights derive from a base among D; or nothing is declared and the weights derive
  from no reference ("nothing claimed, nothing found": a model of its own is not a finding); or the model
  is a reference itself.
- `contradicted`: every declared id resolves, but the weights derive from another base, or only relate
  to a family (`related`), or are `unknown`.
- `undeclared`: the weights derive from a base and the model declares nothing: the licensing case.
- `unverifiable`: a declared id names no model of the manifest, or a model of no reference's lineage.
  This holds whatever the weights say, since the declared model might itself derive from the base found
  (the reason line says what the weights say, so a reviewer sees both).

`verify_paths` fingerprints and classifies the models once (adapters find their base through the
references' `hub_id`) and pairs each verdict with its model's declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.decide.verdict import DERIVED, RELATED, Verdict
from lineage.verify.declarations import Declaration, ReferenceIndex, declared_lineage

CONSISTENT, CONTRADICTED, UNDECLARED, UNVERIFIABLE = "consistent", "contradicted", "undeclared", "unverifiable"
OUTCOMES = (CONSISTENT, CONTRADICTED, UNDECLARED, UNVERIFIABLE)
FINDINGS = (CONTRADICTED, UNDECLARED, UNVERIFIABLE)


@dataclass(frozen=True)
class WeightsView:
    """What the weights say: the parts of a verdict a declaration is checked against."""

    verdict: str
    derived_from: str | None
    family: str
    p_value: float | None
    nearest: str | None
    distance: float | None


@dataclass(frozen=True)
class VerifyOutcome:
    """One model's declared lineage checked against its weights.

    Attributes:
        model: the model's name; path: where it is.
        status: one of `OUTCOMES`.
        reason: one line saying why.
        declaration: what was declared (its `source` None when nothing).
        resolved: the lineages the declared ids stand for (None for an id naming no known lineage).
        weights: the weights' verdict.
    """

    model: str
    path: Path
    status: str
    reason: str
    declaration: Declaration
    resolved: tuple[str | None, ...]
    weights: WeightsView

    def __post_init__(self) -> None:
        if self.status not in OUTCOMES:
            raise ValueError(f"status must be one of {', '.join(OUTCOMES)}")

    @property
    def is_finding(self) -> bool:
        return self.status in FINDINGS

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `lineage verify --format json`."""
        d = self.declaration
        return {
            "model": self.model,
            "path": str(self.path),
            "status": self.status,
            "reason": self.reason,
            "declared": list(d.bases),
            "declared_in": d.where,
            "relation": d.relation,
            "declared_lineage": list(self.resolved),
            "verdict": self.weights.verdict,
            "derived_from": self.weights.derived_from,
            "family": self.weights.family,
            "p_value": self.weights.p_value,
            "nearest": self.weights.nearest,
            "distance": self.weights.distance,
        }


@dataclass(frozen=True)
class VerifyResult:
    """Outcomes of the models checked, and the models (references included) that failed, as error lines."""

    outcomes: list[VerifyOutcome]
    errors: list[tuple[str, str]]  # (model or path, error text)
    references: dict[str, str | None]  # reference name -> hub id, for the BOM


def judge(
    model: str, path: Path, declaration: Declaration, weights: WeightsView, index: ReferenceIndex
) -> VerifyOutcome:
    """Apply the rule of the module docstring to one model."""
    resolved = tuple(_lineage(index, b) for b in declaration.bases)
    said = _weights_say(weights)
    itself = index.reference_at(path)
    if itself is not None:
        status, reason = CONSISTENT, f"the model is the reference '{itself.name}'"
    elif not declaration.bases:
        if weights.verdict == DERIVED:
            status, reason = UNDECLARED, f"declares no base, but {said}"
        else:
            status, reason = CONSISTENT, f"declares no base and {said}: nothing claimed, nothing found"
    elif None in resolved:
        missing = [b for b, r in zip(declaration.bases, resolved) if r is None]
        status = UNVERIFIABLE
        reason = f"declares {', '.join(missing)}, not a model of the references' lineages; {said}"
    elif weights.verdict == DERIVED and weights.derived_from in resolved:
        status, reason = CONSISTENT, f"declares {_list(declaration.bases)} and {said}"
    else:
        status = CONTRADICTED
        reason = f"declares {_list(declaration.bases)} (lineage {_list(sorted(set(resolved)))}), but {said}"
    return VerifyOutcome(model, path, status, reason, declaration, resolved, weights)


def verify_paths(
    models: Sequence[str | Path],
    reference: str | Path,
    options: Any = None,
    progress: Callable[[int, int, str], None] | None = None,
    base: str | Path | None = None,
) -> VerifyResult:
    """Check the declared lineage of models against what their weights say.

    Args:
        models: model folders, folders of them, GGUF files, fingerprint files (which declare nothing).
        reference: the manifest CSV whose references are the known bases (its `hub_id` column names them).
        options: `lineage.jobs.scan.ScanOptions`; defaults when None.
        progress: as for `classify_paths`.
        base: the base model of LoRA adapter folders (else found by the references' `hub_id`).

    Returns:
        One outcome per model that could be fingerprinted, and the errors of the others.

    Raises:
        ManifestError: bad manifest. ClassificationError: no reference could be fingerprinted.

    Example:
        >>> result = verify_paths(["suspects/"], "models_manifest.csv")  # doctest: +SKIP
        >>> [(o.model, o.status) for o in result.outcomes]  # doctest: +SKIP
        [('my-finetune', 'consistent')]
    """
    from lineage.fingerprint.cache import expand_inputs
    from lineage.io.adapter import adapter_bases
    from lineage.jobs.manifest import read_manifest
    from lineage.jobs.scan import classify_paths

    manifest = read_manifest(reference)
    index = ReferenceIndex(manifest)
    expanded = expand_inputs(models)
    paths = [p for p, _ in expanded]
    with adapter_bases(base, index.adapter_bases()):
        result = classify_paths(paths, manifest, options, progress)
    failed = {f.path for f in result.failures if f.key is None}
    errors = [(f.name, f.error or "failed") for f in result.failures]
    verdicts = iter(result.results)
    outcomes = []
    for path in paths:
        if path in failed:
            continue
        verdict = next(verdicts)
        try:
            declaration = declared_lineage(path, index)
        except Exception as exc:  # noqa: BLE001 - one unreadable card is that model's error, not the run's
            from lineage.fingerprint.cache import error_text

            errors.append((verdict.model, error_text(exc)))
            continue
        outcomes.append(judge(verdict.model, path, declaration, weights_view(verdict), index))
    return VerifyResult(outcomes, errors, {r.name: r.hub_id for r in manifest.references})


def weights_view(result: Verdict) -> WeightsView:
    """What the weights say, from the verdict of `classify_paths`."""
    top = result.nearest[0] if result.nearest else {}
    return WeightsView(
        result.verdict, result.derived_from, result.family, result.p_value, top.get("reference"), top.get("distance")
    )


def _weights_say(w: WeightsView) -> str:
    p = f", p={w.p_value:.3g}" if w.p_value is not None else ""
    if w.verdict == DERIVED:
        return f"the weights derive from {w.derived_from}{p}"
    if w.verdict == RELATED:
        return f"the weights only relate to the {w.family} family (nearest {w.nearest}{p})"
    return f"the weights derive from no reference (nearest {w.nearest}{p})"


def _lineage(index: ReferenceIndex, declared: str) -> str | None:
    lineages = {index.lineage_of(row) for row in index.resolve(declared)}
    lineages.discard(None)
    # An id matching rows of several lineages (a loose name match) stands for none of them in particular.
    return lineages.pop() if len(lineages) == 1 else None


def _list(items: Sequence[str]) -> str:
    return ", ".join(str(i) for i in items)
