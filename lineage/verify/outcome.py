"""Declared lineage against the weights' verdict: one outcome per model, and the job that computes them.

The rule, per model (D = the declared ids resolved to lineages, see `lineage.verify.declarations`; the
weights' verdict from `lineage.jobs.paths.classify_paths`):

- `consistent`: the weights derive from a base among D; or nothing is declared and the weights derive
  from no reference ("nothing claimed, nothing found": a model of its own is not a finding); or the model
  is a reference itself.
- `contradicted`: every declared id resolves, but the weights derive from another base, or only relate
  to a family (`related`), or are `unknown`.
- `undeclared`: the weights derive from a base and the model declares nothing: the licensing case.
- `unverifiable`: a declared id names no model of the manifest, or a model of no reference's lineage.
  This holds whatever the weights say, since the declared model might itself derive from the base found
  (the reason line says what the weights say, so a reviewer sees both).
- `error`: the model could not be read or judged (the reason is the error); every model given gets an
  outcome, so a report never loses one.

A reference is consistent with itself however it was given: at the manifest's path, or, given through a
pack or `builtin` (whose paths are fingerprint files), as the same weights: the raw weight responses
equal (`same_weights`: they are random projections of every weight matrix, so a fine-tune, a merge or a
disguise differs and a copy, a cast of equal values or the pack's own source does not). What such a model
declares (often its own hub id, or the base it was trained from) does not change that.

The job that fingerprints and classifies the models and pairs each verdict with its model's declaration
is `lineage.jobs.verify.verify_paths`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineage.decide.pvalues import format_p
from lineage.decide.verdict import DERIVED, RELATED, Verdict
from lineage.refs.manifest import ManifestRow
from lineage.verify.declarations import Declaration, ReferenceIndex

CONSISTENT, CONTRADICTED, UNDECLARED, UNVERIFIABLE = "consistent", "contradicted", "undeclared", "unverifiable"
ERROR = "error"
OUTCOMES = (CONSISTENT, CONTRADICTED, UNDECLARED, UNVERIFIABLE)
STATUSES = (*OUTCOMES, ERROR)
FINDINGS = (CONTRADICTED, UNDECLARED, UNVERIFIABLE)
#: Two fingerprints are of the same weights when their raw responses differ by less than this, relatively
#: (float rounding of one dequantisation against another is about 1e-7; a 4-step fine-tune moves them 1e-3).
SAME_WEIGHTS_RTOL = 1e-5


@dataclass(frozen=True)
class WeightsView:
    """What the weights say: the parts of a verdict a declaration is checked against."""

    verdict: str
    derived_from: str | None
    family: str
    p_value: float | None
    nearest: str | None
    distance: float | None
    log10_p: float | None = None
    relation: str | None = None  # `quantised copy` where the weights tell (`Verdict.relation`)


@dataclass(frozen=True)
class VerifyOutcome:
    """One model's declared lineage checked against its weights.

    Attributes:
        model: the model's name; path: where it is.
        status: one of `OUTCOMES`, or `error` (the model could not be read or judged).
        reason: one line saying why (the error, for `error`).
        declaration: what was declared (its `source` None when nothing).
        resolved: the lineages the declared ids stand for (None for an id naming no known lineage).
        weights: the weights' verdict (None for `error`).
        license: the licence its model card declares (None when none).
        inherited_license: the `license` of the reference the weights derive it from (None when unknown).
    """

    model: str
    path: Path
    status: str
    reason: str
    declaration: Declaration
    resolved: tuple[str | None, ...]
    weights: WeightsView | None
    license: str | None = None
    inherited_license: str | None = None

    @property
    def license_conflict(self) -> bool | None:
        """Whether the declared licence differs from the one inherited from the base the weights found (None:
        one of them is unknown)."""
        if self.license is None or self.inherited_license is None:
            return None
        return self.license.strip().lower() != self.inherited_license.strip().lower()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if (self.weights is None) != (self.status == ERROR):
            raise ValueError("an outcome has the weights' verdict exactly when it is not an error")

    @property
    def is_finding(self) -> bool:
        return self.status in FINDINGS

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `lineage verify --format json` (the weights' fields null for an error)."""
        d = self.declaration
        w = self.weights or WeightsView(None, None, None, None, None, None)
        return {
            "model": self.model,
            "path": str(self.path),
            "status": self.status,
            "reason": self.reason,
            "declared": list(d.bases),
            "declared_in": d.where,
            "relation": d.relation,
            "declared_lineage": list(self.resolved),
            "verdict": w.verdict,
            "derived_from": w.derived_from,
            "weights_relation": w.relation,
            "family": w.family,
            "p_value": w.p_value,
            "nearest": w.nearest,
            "distance": w.distance,
            "error": self.reason if self.status == ERROR else None,
            "license": self.license,
            "inherited_license": self.inherited_license,
            "license_conflict": self.license_conflict,
        }


@dataclass(frozen=True)
class VerifyResult:
    """One outcome per model given (failed ones with status `error`), and every model (references
    included) that failed, as error lines."""

    outcomes: list[VerifyOutcome]
    errors: list[tuple[str, str]]  # (model or path, error text)
    references: dict[str, str | None]  # reference name -> hub id, for the BOM


def judge(
    model: str,
    path: Path,
    declaration: Declaration,
    weights: WeightsView,
    index: ReferenceIndex,
    itself: ManifestRow | None = None,
) -> VerifyOutcome:
    """Apply the rule of the module docstring to one model.

    Args:
        itself: the reference the model is (found by its weights, `same_weights`); else looked up by path.
    """
    resolved = tuple(_lineage(index, b) for b in declaration.bases)
    said = _weights_say(weights)
    itself = itself or index.reference_at(path)
    if itself is not None:
        how = "its own declarations aside" if declaration.bases else "nothing to declare"
        status, reason = CONSISTENT, f"the model is the reference '{itself.name}' ({how})"
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


def error_outcome(model: str, path: Path, error: str) -> VerifyOutcome:
    """The outcome of a model that could not be read or judged: status `error`, the error as its reason."""
    return VerifyOutcome(model, Path(path), ERROR, error, Declaration(None), (), None)


def reference_itself(fp: object, verdict: Verdict, refs: list[tuple[ManifestRow, object]]) -> ManifestRow | None:
    """The reference whose weights the model's are: its nearest reference, when their weights are equal."""
    nearest = verdict.nearest[0]["reference"] if verdict.nearest else None
    if nearest is None:
        return None
    return next((row for row, ref in refs if row.name == nearest and same_weights(fp, ref)), None)


def same_weights(a: object, b: object, rtol: float = SAME_WEIGHTS_RTOL) -> bool:
    """Whether two fingerprints are of the same weights: the same raw responses (the random projections of
    every layer's weight matrices) and the same sketches (which read the embedding and the head, which the
    raw responses leave out), each to within `rtol` of its norm. False when either has none (feature-only
    files): a model whose layers are the reference's but whose embedding was replaced is not the reference.

    Example:
        >>> same_weights(fp, fp)  # doctest: +SKIP
        True
    """
    return all(
        _close(getattr(a, part, None) or {}, getattr(b, part, None) or {}, rtol) for part in ("responses", "sketches")
    )


def _close(ra: dict, rb: dict, rtol: float) -> bool:
    if not ra or set(ra) != set(rb) or any(np.shape(ra[k]) != np.shape(rb[k]) for k in ra):
        return False
    diff = sum(float(np.sum((np.asarray(ra[k], np.float64) - np.asarray(rb[k], np.float64)) ** 2)) for k in ra)
    norm = sum(float(np.sum(np.asarray(rb[k], np.float64) ** 2)) for k in rb)
    return norm > 0.0 and diff <= (rtol**2) * norm


def weights_view(result: Verdict) -> WeightsView:
    """What the weights say, from the verdict of `classify_paths`."""
    top = result.nearest[0] if result.nearest else {}
    return WeightsView(
        result.verdict, result.derived_from, result.family, result.p_value, top.get("reference"), top.get("distance"),
        getattr(result, "log10_p", None), getattr(result, "relation", None),
    )  # fmt: skip


def _weights_say(w: WeightsView) -> str:
    p = f", p={format_p(w.p_value, w.log10_p)}" if w.p_value is not None else ""
    if w.verdict == DERIVED:
        how = f"are a {w.relation} of" if w.relation else "derive from"
        return f"the weights {how} {w.derived_from}{p}"
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
