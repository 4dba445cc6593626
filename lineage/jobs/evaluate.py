"""Repeatable accuracy experiments on a labelled manifest: leave-one-base-out and merge attribution.

`leave_one_base_out` removes each base in turn from the references and classifies that base and every
model derived from it against the others: a family with other sizes in the references should still be
found through them (right family), or the models should be called unknown, never put in another family.
`merge_attribution` runs `lineage.attribute` on every merge of the manifest and scores the parents found
and, where the true weights are known (the catalog's recipe), the weight error.
Both reuse the fingerprint cache, so after one scan they cost only the comparisons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from lineage.attribute.nnls import AttributionOptions, attribute_with_base
from lineage.decide.verdict import DERIVED, UNKNOWN
from lineage.errors import ClassificationError
from lineage.jobs.options import Progress, ScanOptions
from lineage.refs.manifest import BASE_ROLE, INDEPENDENT_ROLE, Manifest
from lineage.refs.open import open_references


def _fingerprints(manifest: Manifest, options: ScanOptions, progress: Progress | None) -> dict:
    outcomes = options.source.gather([(row.name, row.path, row) for row in manifest.rows], progress)
    return {o.name: o.fingerprint for o in outcomes if o.ok}


def leave_one_base_out(
    manifest: str | Path | Manifest, options: ScanOptions | None = None, progress: Progress | None = None
) -> dict:
    """Classify each base's lineage with that base removed from the references.

    Args:
        manifest: a manifest with `role` and `base` columns.
        options: scan settings (method, threshold rule, cache).
        progress: fingerprinting progress.

    Returns:
        `{"folds": [...], "summary": {...}}`; each fold names the base left out and counts its models in
        the right family, in a wrong family, and unknown, with one row per model.
    """
    options = options or ScanOptions()
    manifest = open_references(manifest)
    fps = _fingerprints(manifest, options, progress)
    refs = [r for r in manifest.references if r.name in fps]
    if len(refs) < 2:
        raise ClassificationError("leave-one-base-out needs at least two references")
    folds, totals = [], Counter()
    for left_out in refs:
        kept = [r for r in refs if r.name != left_out.name]
        lineage_rows = [
            r for r in manifest.rows if r.name in fps and left_out.name in (r.name, r.base)
        ]  # the base itself and every model derived from it
        clf = options.classifier().fit(
            [fps[r.name] for r in kept], [r.family for r in kept], [r.base or r.name for r in kept]
        )
        verdicts = clf.classify([fps[r.name] for r in lineage_rows]).results
        rows, counts = [], Counter()
        reachable = left_out.family in {r.family for r in kept}
        for row, v in zip(lineage_rows, verdicts):
            if v.verdict == DERIVED:
                outcome = DERIVED  # its base is not among the references: always a false accusation
            elif v.family == UNKNOWN:
                outcome = UNKNOWN
            else:
                outcome = "right" if v.family == row.family else "wrong"
            counts[outcome] += 1
            counts["reachable" if reachable else "unreachable"] += 1
            if outcome == "right" or (outcome == "unknown" and not reachable):
                counts["expected"] += 1
            rows.append({"model": row.name, "true_family": row.family, "verdict": v.verdict, "family": v.family,
                         "derived_from": v.derived_from, "p_value": v.p_value, "distance": round(v.distance, 4),
                         "outcome": outcome})  # fmt: skip
        totals.update(counts)
        folds.append(
            {"left_out": left_out.name, "family": left_out.family, "family_in_references": reachable,
             "models": len(rows), "right": counts["right"], "wrong": counts["wrong"], "unknown": counts["unknown"],
             "derived": counts["derived"], "rows": rows}
        )  # fmt: skip
    n = totals["reachable"] + totals["unreachable"]
    right_reachable = sum(f["right"] for f in folds if f["family_in_references"])
    unknown_unreachable = sum(f["unknown"] for f in folds if not f["family_in_references"])
    summary = {
        "models": n,
        "right_family": totals["right"],
        "wrong_family": totals["wrong"],
        "unknown": totals["unknown"],
        "derived_from_another_base": totals["derived"],
        # A left-out family with other sizes among the references should be found through them (related); one
        # with no other base left cannot be, and "unknown" is then the right answer. "derived" is always wrong.
        "with_family_in_references": totals["reachable"],
        "right_when_family_in_references": right_reachable,
        "right_rate": round(right_reachable / totals["reachable"], 4) if totals["reachable"] else None,
        "without_family_in_references": totals["unreachable"],
        "unknown_when_family_missing": unknown_unreachable,
        "as_expected": totals["expected"],
    }
    return {"method": options.method, "folds": folds, "summary": summary}


def merge_attribution(
    manifest: str | Path | Manifest,
    recipe: str | Path | None = None,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
) -> dict:
    """Attribute every merge of the manifest (rows whose `parents` list two or more models) and score it.

    Args:
        manifest: the labelled manifest; all its other rows are the candidates.
        recipe: the catalog recipe the manifest was built from, for the true merge weights (optional).
        options: scan settings (cache).
        progress: fingerprinting progress.

    Returns:
        `{"merges": [...], "summary": {...}}`: per merge the parents found with weights, whether the true
        parents are the top-ranked ones, and the largest weight error where truth is given.
    """
    options = options or ScanOptions()
    manifest = open_references(manifest)
    fps = _fingerprints(manifest, options, progress)
    merges = [r for r in manifest.rows if len(r.parents) >= 2 and r.name in fps]
    truth = _recipe_truth(recipe, merges) if recipe is not None and merges else None
    out, hits, weight_errors = [], 0, []
    for row in merges:
        known = replace(manifest, rows=tuple(r for r in manifest.rows if r.name in fps))  # fingerprinted rows only
        result = attribute_with_base(fps[row.name], [fps[r.name] for r in known.rows], known, AttributionOptions())
        found = [p.name for p in result.parents]
        top = set(found[: len(row.parents)])
        ok = top == set(row.parents)
        hits += ok
        entry = {"model": row.name, "derivation": row.derivation, "true_parents": list(row.parents),
                 **result.as_json(), "parents_ranked_first": ok}  # fmt: skip
        entry.pop("layers")
        if truth and row.name in truth:
            estimated = {p.name: p.weight for p in result.parents}
            err = max(abs(estimated.get(name, 0.0) - w) for name, w in truth[row.name])
            entry["true_weights"] = {name: w for name, w in truth[row.name]}
            entry["max_weight_error"] = round(err, 4)
            weight_errors.append((row.derivation, err))
        out.append(entry)
    summary = {"merges": len(merges), "parents_ranked_first": hits,
               "rate": round(hits / len(merges), 4) if merges else None}  # fmt: skip
    for kind in sorted({k for k, _ in weight_errors}):
        errs = [e for k, e in weight_errors if k == kind]
        summary[f"max_weight_error[{kind}]"] = round(max(errs), 4)
    return {"merges": out, "summary": summary}


def _recipe_truth(recipe: str | Path, merges: Sequence) -> Mapping[str, Sequence[tuple[str, float]]]:
    """True parents and weights of the merges; metric-weighted merges recorded theirs in their folder."""
    from lineage.catalog import load_recipe, merge_truth

    return merge_truth(load_recipe(recipe), merges[0].path.parent)


def null_pairs(
    manifest: str | Path | Manifest, options: ScanOptions | None = None, progress: Progress | None = None
) -> dict:
    """The derivation test on pairs known to be unrelated: its false-positive rate on a labelled catalog.

    Null pairs are every (model, reference) pair where the model does not descend from the reference: other
    families, independent models of the reference's family (role `independent`), other sizes of it. For each
    the pair's weight-test p-value (before the correction for the number of references) is computed; the
    false-positive rate is the share below `options.alpha`.

    Args:
        manifest: a labelled manifest (`role`, `base`, `family`).
        options: scan settings (alpha, cache).
        progress: fingerprinting progress.

    Returns:
        `{"pairs": [...], "summary": {...}}`.
    """
    from lineage.compare.identity import weight_test

    options = options or ScanOptions()
    manifest = open_references(manifest)
    fps = _fingerprints(manifest, options, progress)
    refs = [r for r in manifest.references if r.name in fps]
    rows = [r for r in manifest.rows if r.name in fps]
    if not refs:
        raise ClassificationError("no reference could be fingerprinted")
    lineage_of = {r.name: (r.base or r.name) for r in rows}
    pairs = []
    for row in rows:
        for ref in refs:
            if lineage_of[row.name] == (ref.base or ref.name):
                continue  # the model descends from this reference (or is it)
            w = weight_test(fps[row.name], fps[ref.name])
            same_family = row.family == ref.family and row.role in (BASE_ROLE, INDEPENDENT_ROLE)
            pairs.append({"model": row.name, "reference": ref.name, "same_family": same_family,
                          "p_value": w.p_value, "log10_p": w.log10_p, "group": w.group})  # fmt: skip
    below = [p for p in pairs if p["p_value"] < options.alpha]
    hard = [p for p in pairs if p["same_family"]]
    summary = {
        "null_pairs": len(pairs),
        "alpha": options.alpha,
        "false_positive_rate": round(len(below) / len(pairs), 4) if pairs else None,
        "false_positives": [f"{p['model']} ~ {p['reference']}" for p in below],
        "same_family_pairs": len(hard),
        "same_family_false_positive_rate": (
            round(sum(p["p_value"] < options.alpha for p in hard) / len(hard), 4) if hard else None
        ),
        "smallest_p_value": min((p["p_value"] for p in pairs), default=None),
    }
    return {"pairs": pairs, "summary": summary}


def _hidden(fp: object) -> int | None:
    summary = getattr(fp, "summary", None)
    return None if summary is None else summary.hidden_size


def declared_lineage_check(
    manifest: str | Path | Manifest, options: ScanOptions | None = None, progress: Progress | None = None
) -> dict:
    """Run `lineage verify` on every non-base model of a labelled catalog and score it.

    The expected outcome of each model follows from the manifest alone (its `declared` hub ids, the `base`
    each `hub_id` stands for: `lineage.catalog.declare.expected_outcome`).

    Returns:
        `{"models": [...], "summary": {outcome: {"correct", "total", "rate"}, "all": ...}}`.
    """
    from lineage.catalog.declare import expected_outcome
    from lineage.jobs.verify import verify_paths
    from lineage.report.summary import accuracy
    from lineage.verify.outcome import OUTCOMES

    options = options or ScanOptions()
    manifest = open_references(manifest)
    lineage_of = {r.hub_id: r.base or "" for r in manifest.rows if r.hub_id}
    suspects = [r for r in manifest.rows if r.role != BASE_ROLE]
    result = verify_paths([r.path for r in suspects], manifest.path, options, progress)
    got = {o.model: o for o in result.outcomes}
    models, hits = [], {k: [] for k in OUTCOMES}
    for row in suspects:
        declared = list(row.declared)
        want = expected_outcome(role=row.role, base=row.base or "", declared=declared, lineage_of=lineage_of)
        outcome = got.get(row.name)
        have = outcome.status if outcome is not None else "error"
        if want in hits:
            hits[want].append(have == want)
        models.append({"model": row.name, "expected": want, "outcome": have,
                       "reason": outcome.reason if outcome is not None else None})  # fmt: skip
    summary = {k: accuracy(v) for k, v in hits.items()}
    summary["all"] = accuracy(h for v in hits.values() for h in v)
    return {"models": models, "summary": summary, "errors": result.errors}
