"""Merge attribution: which known models a suspect was merged from, and with what weights.

The raw responses in a fingerprint (`Psi^T W X^T` per weight matrix, random probes on both sides) are
linear in the weights. A linear merge `W = sum_i w_i W_i`, or task arithmetic `W = B + sum_i l_i (W_i - B)`,
is therefore the same combination of the parents' responses. With `B` the suspect's base (the candidate
base nearest in response space), the suspect's task vector `t = R - R_B` is regressed on the candidates'
task vectors `t_i = R_i - R_B` by non-negative least squares: the parents are the candidates with weight,
the weights estimate the merge coefficients, and the residual says how much of the suspect they do not
explain. TIES, DARE and SLERP are not linear; their parents still explain most of the task vector, with
weights near the nominal ones. Per layer, the same regression restricted to the chosen parents gives the
evidence: a layer the parents do not explain stands out by its residual.

Only candidates in the suspect's basis (the same tensor roles and shapes) can be parents: a model that
was rotated or permuted lives in another basis and is not a merge parent in weight space.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from lineage.errors import ClassificationError, LineageError
from lineage.fingerprint import Fingerprint

_LAYER = re.compile(r"^layers\.(\d+)\.")


@dataclass(frozen=True)
class AttributionOptions:
    """Settings of `attribute`.

    Attributes:
        min_weight: candidates below this weight are not reported as parents.
        max_parents: at most this many parents are reported (largest weights first).
        max_residual: no parents are reported when the best fit leaves more than this share of the task
            vector's norm unexplained (0.95: the candidates explain under 10% of its energy).
    """

    min_weight: float = 0.05
    max_parents: int = 8
    max_residual: float = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.min_weight < 1:
            raise ValueError("min_weight must be in [0, 1)")
        if self.max_parents < 1:
            raise ValueError("max_parents must be >= 1")
        if not 0 < self.max_residual <= 1:
            raise ValueError("max_residual must be in (0, 1]")


@dataclass(frozen=True)
class ParentWeight:
    name: str
    weight: float


@dataclass(frozen=True)
class LayerEvidence:
    """One layer: the parents' weights fitted on that layer alone, and the share left unexplained."""

    layer: int
    weights: tuple[float, ...]
    residual: float


@dataclass(frozen=True)
class Attribution:
    """The answer for one suspect (JSON keys: model, path, status, base, parents, residual, layers)."""

    model: str
    base: str | None
    parents: tuple[ParentWeight, ...]
    residual: float
    layers: tuple[LayerEvidence, ...]
    path: str | None = None

    def as_json(self) -> dict:
        return {
            "model": self.model,
            "path": self.path,
            "status": "ok",
            "error": None,
            "base": self.base,
            "parents": [{"name": p.name, "weight": round(p.weight, 4)} for p in self.parents],
            "residual": round(self.residual, 4),
            "layers": [
                {"layer": ev.layer, "weights": [round(w, 4) for w in ev.weights], "residual": round(ev.residual, 4)}
                for ev in self.layers
            ],
        }


def _signature(fp: Fingerprint) -> tuple:
    return tuple((k, v.shape) for k, v in sorted(fp.responses.items()))


def _flat(fp: Fingerprint, keys: Sequence[str]) -> np.ndarray:
    return np.concatenate([fp.responses[k].astype(np.float64).ravel() for k in keys])


def attribute(
    suspect: Fingerprint,
    candidates: Sequence[Fingerprint],
    bases: Sequence[str],
    options: AttributionOptions | None = None,
    base: str | None = None,
) -> Attribution:
    """Name the parents of a merged suspect and estimate their weights.

    Args:
        suspect: the suspect's fingerprint.
        candidates: known models (the suspect itself is skipped by name).
        bases: names of the candidates that are base models.
        options: thresholds.
        base: the suspect's base as classification found it (`lineage.decide.kmeans`); when given, only that
            base is used, and an empty string means the suspect belongs to no known family (no parents).
            When None, the base nearest in response space is taken.

    Returns:
        The attribution; `parents` is empty when no candidate shares the suspect's basis.

    Raises:
        ClassificationError: the suspect has no raw responses (a published feature file).
    """
    options = options or AttributionOptions()
    if not suspect.responses:
        raise ClassificationError(f"'{suspect.name}' has no raw responses: fingerprint the model folder itself")
    sig = _signature(suspect)
    pool = [c for c in candidates if c.name != suspect.name and c.responses and _signature(c) == sig]
    keys = sorted(suspect.responses)
    base_pool = [c for c in pool if c.name in set(bases) and (base is None or c.name == base)]
    if not base_pool:
        return Attribution(suspect.name, None, (), 1.0, ())
    target = _flat(suspect, keys)
    base = min(base_pool, key=lambda c: np.linalg.norm(_flat(c, keys) - target))
    others = [c for c in pool if c.name not in set(bases)]
    t = target - _flat(base, keys)
    if np.linalg.norm(t) > np.linalg.norm(_flat(base, keys)):
        # A "task vector" larger than the base's own weights is no fine-tune of it: unrelated models
        # (independent weights) sit about sqrt(2) times the norm apart.
        return Attribution(suspect.name, None, (), 1.0, ())
    if not others or not np.any(t):
        return Attribution(suspect.name, base.name, (), 0.0 if not np.any(t) else 1.0, ())
    matrix = np.stack([_flat(c, keys) - _flat(base, keys) for c in others], axis=1)
    scale = np.linalg.norm(matrix, axis=0)
    scale[scale == 0] = 1.0
    weights, _ = nnls(matrix / scale, t, maxiter=50 * matrix.shape[1])
    weights = weights / scale
    residual = float(np.linalg.norm(t - matrix @ weights) / np.linalg.norm(t))
    if residual > options.max_residual:
        return Attribution(suspect.name, base.name, (), residual, ())  # the candidates explain (almost) nothing
    order = [i for i in np.argsort(-weights) if weights[i] >= options.min_weight][: options.max_parents]
    parents = tuple(ParentWeight(others[i].name, float(weights[i])) for i in order)
    layers = _layer_evidence(suspect, base, [others[i] for i in order], keys)
    return Attribution(suspect.name, base.name, parents, residual, layers)


def _layer_evidence(
    suspect: Fingerprint, base: Fingerprint, parents: Sequence[Fingerprint], keys: Sequence[str]
) -> tuple[LayerEvidence, ...]:
    if not parents:
        return ()
    by_layer: dict[int, list[str]] = {}
    for key in keys:
        m = _LAYER.match(key)
        if m:
            by_layer.setdefault(int(m.group(1)), []).append(key)
    out = []
    for layer, layer_keys in sorted(by_layer.items()):
        t = _flat(suspect, layer_keys) - _flat(base, layer_keys)
        matrix = np.stack([_flat(p, layer_keys) - _flat(base, layer_keys) for p in parents], axis=1)
        norm = np.linalg.norm(t)
        if norm == 0:
            out.append(LayerEvidence(layer, tuple(0.0 for _ in parents), 0.0))
            continue
        w, _ = nnls(matrix, t)
        out.append(LayerEvidence(layer, tuple(float(x) for x in w), float(np.linalg.norm(t - matrix @ w) / norm)))
    return tuple(out)


def attribute_paths(
    suspects: Sequence[str | Path],
    candidates_manifest: str | Path,
    *,
    options=None,  # noqa: ANN001 - FingerprintOptions (imported lazily: torch is heavy)
    cache=None,  # noqa: ANN001 - FingerprintCache
    attribution: AttributionOptions | None = None,
    on_fingerprint: Callable[[], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    verify_pack: bool = True,
) -> tuple[list[Attribution], list[tuple[str, str]]]:
    """Attribute each suspect (model folder, folder of models, or fingerprint file) against a manifest.

    Args:
        suspects: paths to suspects.
        candidates_manifest: CSV with `path` (and `role`: rows with role `base` are bases), a pack or `builtin`.
        options: fingerprint options for folders.
        cache: a `FingerprintCache`, or None.
        attribution: thresholds.
        on_fingerprint: called after each fingerprint obtained (progress).
        progress: a `progress(done, total, name)` callback (with the hooks of `lineage.fingerprint.cache`).
        verify_pack: check a pack's files against their sha256 first.

    Returns:
        (one attribution per suspect that could be fingerprinted, `(name, error)` for every model, suspect
        or candidate, that could not: a bad model never aborts the job).
    """
    rows, failures = attribute_rows(
        suspects, candidates_manifest, options=options, cache=cache, attribution=attribution,
        on_fingerprint=on_fingerprint, progress=progress, verify_pack=verify_pack,
    )  # fmt: skip
    return [r for r in rows if isinstance(r, Attribution)], failures


def attribute_rows(
    suspects: Sequence[str | Path],
    candidates_manifest: str | Path,
    *,
    options=None,  # noqa: ANN001
    cache=None,  # noqa: ANN001
    attribution: AttributionOptions | None = None,
    on_fingerprint: Callable[[], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    verify_pack: bool = True,
) -> tuple[list[Attribution | dict], list[tuple[str, str]]]:
    """`attribute_paths`, with one entry per suspect given, in order: its `Attribution`, or for a suspect
    that could not be fingerprinted its JSON row (`as_json`'s keys: `status` `error`, the one-line `error`,
    no base, no parents). Same arguments; the failures list still names every model that failed."""
    from lineage.fingerprint.gather import gather_fingerprints
    from lineage.fingerprint.inputs import expand_inputs
    from lineage.io.names import model_name, unique_names
    from lineage.refs.open import open_references

    manifest = open_references(candidates_manifest, verify=verify_pack)
    tick = progress or ((lambda done, total, name: on_fingerprint()) if on_fingerprint else None)
    known_outcomes = gather_fingerprints([(r.name, r.path, r) for r in manifest.rows], lambda: options, cache, tick)
    rows = [o.key for o in known_outcomes if o.ok]
    known = [o.fingerprint for o in known_outcomes if o.ok]
    manifest = replace(manifest, rows=tuple(rows))  # candidates that could be fingerprinted
    inputs = expand_inputs(suspects)
    names = unique_names([model_name(p) for p, _ in inputs], [p for p, _ in inputs])
    found = iter(gather_fingerprints([(None, p, None) for p, e in inputs if e is None], lambda: options, cache, tick))
    out: list[Attribution | dict] = []
    failures = [(o.name, o.error) for o in known_outcomes if not o.ok]
    for (path, problem), name in zip(inputs, names):
        o = next(found) if problem is None else None
        error = problem if o is None else o.error
        if error is not None:
            out.append(failed_json(name, path, error))
            failures.append((name, error))
            continue
        fp = o.fingerprint if o.fingerprint.name == name else replace(o.fingerprint, name=name)
        try:
            out.append(replace(attribute_with_base(fp, known, manifest, attribution), path=str(path)))
        except LineageError as exc:  # e.g. a feature-only suspect: no raw responses to regress
            out.append(failed_json(name, path, str(exc)))
            failures.append((name, str(exc)))
    return out, failures


def failed_json(name: str, path: str | Path, error: str) -> dict:
    """The JSON row of a suspect that could not be attributed (the keys of `Attribution.as_json`)."""
    return {"model": name, "path": str(path), "status": "error", "error": error, "base": None, "parents": [],
            "residual": None, "layers": []}  # fmt: skip


def attribute_with_base(
    suspect: Fingerprint, known: Sequence[Fingerprint], manifest, attribution: AttributionOptions | None = None  # noqa: ANN001
) -> Attribution:
    """`attribute` with the suspect's base found by classification against the manifest's bases (the
    suspect itself left out of them), so a model of no known family gets no base and no parents."""
    from lineage.decide.kmeans import FamilyClassifier
    from lineage.refs.manifest import UNKNOWN_FAMILY

    ref_names = {r.name for r in manifest.references}
    refs = [(r, fp) for r, fp in zip(manifest.rows, known) if r.name in ref_names and r.name != suspect.name]
    if not refs:
        return Attribution(suspect.name, None, (), 1.0, ())
    verdict = (
        FamilyClassifier()
        .fit([fp for _, fp in refs], [r.family or r.name for r, _ in refs], [r.name for r, _ in refs])
        .classify([suspect])
        .results[0]
    )
    base = verdict.base if verdict.family != UNKNOWN_FAMILY and verdict.base else ""
    result = attribute(suspect, known, [r.name for r, _ in refs], attribution, base=base)
    # A disguised copy (rotated, MergeLocked) has its base's function in another weight basis: no merge
    # parents in weight space, but its base is still the one classification found.
    return result if result.base or not base else replace(result, base=base)
