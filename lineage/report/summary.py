"""Scoring a scan against the manifest's labels.

The expected answer for a row is its `family` and `base`, except that a model whose family has no
reference, or whose role is `outsider`, or whose family is `unknown`, should be called `unknown`: that
is the open-set question. Accuracies are given over the suspects (rows that are not references) and,
as the TensorGuard paper counts them, over every row including the references, whose K-Means cluster can
differ from their own family. `closed_set` repeats the family scores with the family before the unknown
rule (`cluster_family`): that is the paper's table. Failed rows count as wrong everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

UNKNOWN = "unknown"
OUTSIDER_ROLE = "outsider"
UNSPECIFIED = "unspecified"


def accuracy(hits: Iterable[bool]) -> dict:
    """`{"correct", "total", "rate"}` of a sequence of hits; rate None when there is nothing to score."""
    hits = list(hits)
    correct = sum(bool(h) for h in hits)
    return {"correct": correct, "total": len(hits), "rate": round(correct / len(hits), 4) if hits else None}


def expected_family(row: dict, reference_families: set[str]) -> str:
    """The right family answer for a row: its family, or `unknown` when no reference can vouch for it."""
    family = row.get("true_family")
    if row.get("role") == OUTSIDER_ROLE or family == UNKNOWN or family not in reference_families:
        return UNKNOWN
    return family


INDEPENDENT_ROLE = "independent"


def expected_verdict(row: dict, reference_families: set[str], reference_bases: set[str]) -> tuple[str, str | None]:
    """The right verdict for a suspect row and its base: `derived` from a reference base, `related` to a
    reference family (an independent model, or a derivative whose base is not a reference), or `unknown`."""
    if expected_family(row, reference_families) == UNKNOWN:
        return UNKNOWN, None
    base = row.get("true_base")
    if row.get("role") != INDEPENDENT_ROLE and base in reference_bases:
        return "derived", base
    return "related", None


def _verdict_scores(suspects: list[dict], ref_families: set[str], ref_bases: set[str]) -> dict:
    hits, derived_ok, false_derived, missed = [], [], [], []
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for s in suspects:
        row = s["row"]
        want, base = expected_verdict(row, ref_families, ref_bases)
        ok_row = row.get("error") is None
        got = row.get("verdict") if ok_row else "error"
        hit = got == want and (want != "derived" or row.get("derived_from") == base)
        if want in ("related", "unknown") and want == got:
            hit = hit and (want == "unknown" or row.get("family") == row.get("true_family"))
        hits.append(hit)
        by_kind[want].append(hit)
        if want == "derived":
            derived_ok.append(got == "derived" and row.get("derived_from") == base)
            if got != "derived":
                missed.append(row["model"])
        if got == "derived" and (want != "derived" or row.get("derived_from") != base):
            false_derived.append(row["model"])
    return {
        "tested": sum(s["row"].get("p_value") is not None for s in suspects),
        "verdict_accuracy": accuracy(hits),
        "by_expected_verdict": {k: accuracy(v) for k, v in sorted(by_kind.items())},
        "derived_from_accuracy": accuracy(derived_ok),
        "false_derived": {"count": len(false_derived), "models": false_derived},
        "missed_derived": {"count": len(missed), "models": missed},
    }


def summarize(
    rows: Sequence[dict],
    reference_names: Iterable[str],
    reference_families: Iterable[str],
    reference_bases: Iterable[str],
) -> dict:
    """Scores of a scan's rows.

    Args:
        rows: scan rows (`family`, `base`, `cluster_family`, `true_family`, `true_base`, `role`,
            `derivation`, `error`, `model`).
        reference_names: the references' names (rows scored as references).
        reference_families: the families the references stand for.
        reference_bases: the base labels the references stand for.

    Returns:
        A JSON-ready dict: counts, `family_accuracy`, `family_accuracy_with_bases`, `base_accuracy`,
        `closed_set`, `by_derivation`, `by_role`, `confusion`, `outsiders`, `false_unknowns`, `errors`.
    """
    ref_names, ref_families, ref_bases = set(reference_names), set(reference_families), set(reference_bases)
    scored = []
    for row in rows:
        reference = row["model"] in ref_names
        fam = expected_family(row, ref_families)
        true_base = row.get("true_base") or (row["model"] if reference else None)  # a base is its own base
        base = true_base if fam != UNKNOWN and true_base in ref_bases else None
        scored.append(
            {
                "row": row,
                "reference": reference,
                "expected": fam,
                "expected_base": base,
                "family_ok": row.get("error") is None and row.get("family") == fam,
                "closed_ok": row.get("error") is None and row.get("cluster_family") == row.get("true_family"),
                "base_ok": row.get("error") is None and (row.get("base") == base if fam != UNKNOWN else True),
                "scorable_base": base is not None,
            }
        )
    suspects = [s for s in scored if not s["reference"]]
    return {
        "models": len(rows),
        "references": sum(s["reference"] for s in scored),
        "suspects": len(suspects),
        "failed": sum(s["row"].get("error") is not None for s in scored),
        "family_accuracy": accuracy(s["family_ok"] for s in suspects),
        "family_accuracy_with_bases": accuracy(s["family_ok"] for s in scored),
        "base_accuracy": accuracy(s["base_ok"] for s in suspects if s["scorable_base"]),
        "closed_set": {
            "family_accuracy": accuracy(s["closed_ok"] for s in suspects if s["expected"] != UNKNOWN),
            "family_accuracy_with_bases": accuracy(s["closed_ok"] for s in scored if s["expected"] != UNKNOWN),
        },
        "by_derivation": _grouped(suspects, lambda s: s["row"].get("derivation")),
        "by_role": _grouped(scored, lambda s: s["row"].get("role")),
        "confusion": _confusion(suspects),
        "outsiders": _outsiders(suspects),
        "false_unknowns": _false_unknowns(suspects),
        "errors": {s["row"]["model"]: s["row"]["error"] for s in scored if s["row"].get("error") is not None},
        "verdicts": _verdict_scores(suspects, ref_families, ref_bases),
    }


def _grouped(scored: list[dict], key) -> dict:  # noqa: ANN001 - a small lambda
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in scored:
        groups[key(s) or UNSPECIFIED].append(s)
    return {
        name: {
            "family": accuracy(s["family_ok"] for s in members),
            "base": accuracy(s["base_ok"] for s in members if s["scorable_base"]),
        }
        for name, members in sorted(groups.items())
    }


def _confusion(suspects: list[dict]) -> dict:
    """Counts of expected family (rows) x predicted family (columns); a failed row is predicted `error`."""
    predicted = [s["row"].get("family") if s["row"].get("error") is None else "error" for s in suspects]
    labels = sorted({s["expected"] for s in suspects} | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for s, p in zip(suspects, predicted):
        matrix[index[s["expected"]]][index[p]] += 1
    return {"labels": labels, "matrix": matrix, "rows": "expected", "columns": "predicted"}


def _outsiders(suspects: list[dict]) -> dict:
    outsiders = [s for s in suspects if s["expected"] == UNKNOWN]
    missed = [s["row"]["model"] for s in outsiders if not s["family_ok"]]
    return {"total": len(outsiders), "flagged": len(outsiders) - len(missed), "missed": missed}


def _false_unknowns(suspects: list[dict]) -> dict:
    models = [
        s["row"]["model"]
        for s in suspects
        if s["expected"] != UNKNOWN and s["row"].get("error") is None and s["row"].get("family") == UNKNOWN
    ]
    return {"count": len(models), "models": models}


def summary_text(summary: dict) -> str:
    """A few lines for the terminal: the scores a reader looks for first."""

    def acc(a: dict | None) -> str:
        if not a or not a.get("total"):
            return "-"
        return f"{a['correct']}/{a['total']} ({a['rate']:.1%})"

    threshold = summary.get("threshold") or {}
    value = threshold.get("threshold")
    lines = [
        f"method {summary.get('method')}: {summary.get('description')}",
        f"models {summary.get('models')}: references {summary.get('references')}, suspects "
        f"{summary.get('suspects')}, failed {summary.get('failed')} (fingerprinted "
        f"{summary.get('fingerprinted')}, cached {summary.get('cached')}, loaded {summary.get('loaded')})",
        f"family accuracy: {acc(summary.get('family_accuracy'))} suspects, "
        f"{acc(summary.get('family_accuracy_with_bases'))} with bases",
        f"closed-set (before unknown): {acc(summary.get('closed_set', {}).get('family_accuracy'))} suspects, "
        f"{acc(summary.get('closed_set', {}).get('family_accuracy_with_bases'))} with bases",
        f"base accuracy: {acc(summary.get('base_accuracy'))}",
        f"unknown threshold: {'off' if value is None else f'{value:.4g}'} ({threshold.get('rule')})",
        f"outsiders flagged: {summary['outsiders']['flagged']}/{summary['outsiders']['total']}, "
        f"false unknowns: {summary['false_unknowns']['count']}",
    ]
    verdicts = summary.get("verdicts")
    if verdicts and not verdicts.get("tested"):
        lines.append("verdicts: no derivation test ran (fingerprints without sketches and weight responses)")
    elif verdicts:
        lines.append(
            f"verdicts: {acc(verdicts['verdict_accuracy'])} right; derived from the right base "
            f"{acc(verdicts['derived_from_accuracy'])}; falsely derived {verdicts['false_derived']['count']}"
            + (f" ({', '.join(verdicts['false_derived']['models'])})" if verdicts["false_derived"]["models"] else "")
            + f"; missed derivatives {verdicts['missed_derived']['count']}"
        )
        lines.append(
            "  by expected verdict: "
            + ", ".join(f"{k} {acc(v)}" for k, v in verdicts["by_expected_verdict"].items())
        )
    groups = summary.get("by_derivation") or {}
    if groups:
        # One row per derivation kind, so a weakness (a disguise, a merge method) shows as a row.
        width = max(len(str(k)) for k in groups)
        lines.append("")
        lines.append(f"{'derivation':<{width}}  {'family':>14}  {'base':>14}")
        for kind, scores in sorted(groups.items(), key=lambda kv: str(kv[0])):
            lines.append(f"{str(kind):<{width}}  {acc(scores.get('family')):>14}  {acc(scores.get('base')):>14}")
    return "\n".join(lines)
