"""Scoring a scan against the manifest's labels, for the rows that carry them.

Labels are optional. A row is scored only for what it says: its family (`true_family`), its base
(`true_base`) and its role (`outsider`: the answer is `unknown`; `independent`: trained from scratch, at
most `related`). A row with none of them is unlabelled: it gets its verdict, it is counted, and it is not
scored. The expected answer for a labelled row is its `family` and `base`, except that a model whose
family has no reference, or whose role is `outsider`, or whose family is `unknown`, should be called
`unknown`: that is the open-set question. The expected verdict needs the base: `derived` from a reference
base, `related` for an independent model or a derivative of a base that is no reference; a row with a
family and no base is scored on its family only. Accuracies are given over the suspects (rows that are
not references) and, as the TensorGuard paper counts them, over every row including the references, whose
K-Means cluster can differ from their own family. `closed_set` repeats the family scores with the family
before the unknown rule (`cluster_family`): that is the paper's table. Failed rows are counted apart
(`failed`, `errors`), never as wrong answers: a model that could not be read was not misjudged.
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


def is_labelled(row: dict) -> bool:
    """Whether a row says anything a verdict can be scored against (a family, a base, or a telling role)."""
    return (
        row.get("true_family") is not None
        or row.get("true_base") is not None
        or row.get("role") in (OUTSIDER_ROLE, INDEPENDENT_ROLE)
    )


def expected_family(row: dict, reference_families: set[str]) -> str | None:
    """The right family answer for a row: its family, or `unknown` when no reference can vouch for it;
    None when the row has no family label (not scored on its family)."""
    family = row.get("true_family")
    if row.get("role") == OUTSIDER_ROLE or family == UNKNOWN:
        return UNKNOWN
    if family is None:
        return None
    return family if family in reference_families else UNKNOWN


INDEPENDENT_ROLE = "independent"


def expected_verdict(
    row: dict, reference_families: set[str], reference_bases: set[str]
) -> tuple[str, str | None] | None:
    """The right verdict for a suspect row and its base: `derived` from a reference base, `related` to a
    reference family (an independent model, or a derivative whose base is not a reference), or `unknown`;
    None when the labels do not say (no base label, or a base that is no reference and no family)."""
    family = expected_family(row, reference_families)
    if family == UNKNOWN:
        return UNKNOWN, None
    base = row.get("true_base")
    if row.get("role") == INDEPENDENT_ROLE:
        return ("related", None) if family is not None else None
    if base in reference_bases:
        return "derived", base
    if base is not None and family is not None:
        return "related", None
    return None


def _verdict_scores(suspects: list[dict], ref_families: set[str], ref_bases: set[str]) -> dict:
    hits, derived_ok, false_derived, missed = [], [], [], []
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for s in suspects:
        row = s["row"]
        got = row.get("verdict")
        if s["expected_verdict"] is None or row.get("error") is not None:
            continue  # not labelled for its verdict, or failed (counted apart)
        want, base = s["expected_verdict"]
        hit = got == want and (want != "derived" or row.get("derived_from") == base)
        if want == "related" and got == want:
            hit = hit and row.get("family") == row.get("true_family")
        hits.append(hit)
        by_kind[want].append(hit)
        if want == "derived":
            derived_ok.append(hit)
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


def verdict_counts(rows: Sequence[dict]) -> dict[str, int]:
    """How many rows got each verdict (`error` for the failed ones), labelled or not."""
    counts = {"derived": 0, "related": 0, "unknown": 0, "error": 0}
    for row in rows:
        key = "error" if row.get("error") is not None else row.get("verdict")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _scored(row: dict, reference: bool, ref_families: set[str], ref_bases: set[str]) -> dict:
    """One row with what it should have been and whether it was (only for what its labels say)."""
    ok = row.get("error") is None
    fam = expected_family(row, ref_families)
    true_base = row.get("true_base") or (row["model"] if reference else None)  # a base is its own base
    base = true_base if fam not in (None, UNKNOWN) and true_base in ref_bases else None
    tested = row.get("p_value") is not None  # a model without a derivation test has no base to score
    return {
        "row": row,
        "reference": reference,
        "labelled": is_labelled(row) or reference,
        "ok": ok,
        "expected": fam,
        "expected_base": base,
        "expected_verdict": None if reference else expected_verdict(row, ref_families, ref_bases),
        "family_ok": ok and row.get("family") == fam,
        "closed_ok": ok and row.get("cluster_family") == row.get("true_family"),
        "base_ok": ok and (row.get("base") == base if fam != UNKNOWN else True),
        "scorable_family": ok and fam is not None,
        "scorable_base": ok and tested and base is not None,
    }


def summarize(
    rows: Sequence[dict],
    reference_names: Iterable[str],
    reference_families: Iterable[str],
    reference_bases: Iterable[str],
) -> dict:
    """Scores of a scan's rows, over the rows whose labels say what to score (see the module docstring).

    Args:
        rows: scan rows (`family`, `base`, `cluster_family`, `true_family`, `true_base`, `role`,
            `derivation`, `error`, `model`).
        reference_names: the references' names (rows scored as references).
        reference_families: the families the references stand for.
        reference_bases: the base labels the references stand for.

    Returns:
        A JSON-ready dict: counts (`models`, `references`, `suspects`, `labelled`, `unlabelled`, `failed`,
        `verdict_counts`), `family_accuracy`, `family_accuracy_with_bases`, `base_accuracy`, `closed_set`,
        `by_derivation`, `by_role`, `confusion`, `outsiders`, `false_unknowns`, `errors`, `verdicts`.
    """
    ref_names, ref_families, ref_bases = set(reference_names), set(reference_families), set(reference_bases)
    scored = [_scored(row, row["model"] in ref_names, ref_families, ref_bases) for row in rows]
    suspects = [s for s in scored if not s["reference"]]
    fam = [s for s in suspects if s["scorable_family"]]
    fam_all = [s for s in scored if s["scorable_family"]]
    closed = [s for s in fam if s["expected"] != UNKNOWN]
    return {
        "models": len(rows),
        "references": sum(s["reference"] for s in scored),
        "suspects": len(suspects),
        "labelled": sum(s["labelled"] for s in suspects),
        "unlabelled": sum(not s["labelled"] for s in suspects),
        "failed": sum(not s["ok"] for s in scored),
        "verdict_counts": verdict_counts([s["row"] for s in suspects]),
        "family_accuracy": accuracy(s["family_ok"] for s in fam),
        "family_accuracy_with_bases": accuracy(s["family_ok"] for s in fam_all),
        "base_accuracy": accuracy(s["base_ok"] for s in suspects if s["scorable_base"]),
        "closed_set": {
            "family_accuracy": accuracy(s["closed_ok"] for s in closed),
            "family_accuracy_with_bases": accuracy(s["closed_ok"] for s in fam_all if s["expected"] != UNKNOWN),
        },
        "by_derivation": _grouped(fam, lambda s: s["row"].get("derivation")),
        "by_role": _grouped(fam_all, lambda s: s["row"].get("role")),
        "confusion": _confusion(fam),
        "outsiders": _outsiders(fam),
        "false_unknowns": _false_unknowns(fam),
        "errors": {s["row"]["model"]: s["row"]["error"] for s in scored if not s["ok"]},
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
    """Counts of expected family (rows) x predicted family (columns) over the scored rows."""
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


def _acc(a: dict | None) -> str:
    if not a or not a.get("total"):
        return "-"
    return f"{a['correct']}/{a['total']} ({a['rate']:.1%})"


def summary_text(summary: dict) -> str:
    """A few lines for the terminal: what was found first, then the scores of the labelled rows (if any)."""
    threshold = summary.get("threshold") or {}
    value = threshold.get("threshold")
    counts = summary.get("verdict_counts") or {}
    lines = [
        f"method {summary.get('method')}: {summary.get('description')}",
        f"models {summary.get('models')}: references {summary.get('references')}, suspects "
        f"{summary.get('suspects')} (labelled {summary.get('labelled', 0)}, unlabelled {summary.get('unlabelled', 0)})"
        f", failed {summary.get('failed')} (fingerprinted {summary.get('fingerprinted')}, cached "
        f"{summary.get('cached')}, loaded {summary.get('loaded')})",
        "suspects: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k != "error"),
    ]
    level = summary.get("level")
    if level:
        lines.append(f"level: {level['text']}")
    lines.append(f"unknown threshold: {'off' if value is None else f'{value:.4g}'} ({threshold.get('rule')})")
    lines += _score_lines(summary)
    lines += [f"note: {note}" for note in summary.get("notes") or ()]
    if summary.get("failed"):
        lines.append(f"failed: {summary['failed']} model(s) could not be read (counted apart, not as wrong answers)")
    return "\n".join(lines)


def _score_lines(summary: dict) -> list[str]:
    """The scores, over the labelled rows only; one line saying so when nothing is labelled."""
    if not summary.get("labelled"):
        return ["scores: none, the suspects carry no labels (a manifest's family, base or role columns)"]
    verdicts = summary.get("verdicts") or {}
    tested = bool(verdicts.get("tested"))
    lines = [
        f"family accuracy: {_acc(summary.get('family_accuracy'))} suspects, "
        f"{_acc(summary.get('family_accuracy_with_bases'))} with bases",
        f"closed-set (before unknown): {_acc(summary.get('closed_set', {}).get('family_accuracy'))} suspects, "
        f"{_acc(summary.get('closed_set', {}).get('family_accuracy_with_bases'))} with bases",
        f"outsiders flagged: {summary['outsiders']['flagged']}/{summary['outsiders']['total']}, "
        f"false unknowns: {summary['false_unknowns']['count']}",
    ]
    if not tested:
        lines.append("derivation: not tested (fingerprints without sketches and weight responses): no base scored")
    else:
        lines.insert(2, f"base accuracy: {_acc(summary.get('base_accuracy'))}")
        lines.append(
            f"verdicts: {_acc(verdicts['verdict_accuracy'])} right; derived from the right base "
            f"{_acc(verdicts['derived_from_accuracy'])}; falsely derived {verdicts['false_derived']['count']}"
            + (f" ({', '.join(verdicts['false_derived']['models'])})" if verdicts["false_derived"]["models"] else "")
            + f"; missed derivatives {verdicts['missed_derived']['count']}"
        )
        lines.append(
            "  by expected verdict: "
            + ", ".join(f"{k} {_acc(v)}" for k, v in verdicts["by_expected_verdict"].items())
        )
    return lines + _derivation_table(summary.get("by_derivation") or {}, tested)


def _derivation_table(groups: dict, tested: bool) -> list[str]:
    """One row per derivation kind, so a weakness (a disguise, a merge method) shows as a row."""
    if not groups or set(groups) == {UNSPECIFIED}:
        return []
    width = max(len(str(k)) for k in groups)
    lines = ["", f"{'derivation':<{width}}  {'family':>14}" + (f"  {'base':>14}" if tested else "")]
    for kind, scores in sorted(groups.items(), key=lambda kv: str(kv[0])):
        base = f"  {_acc(scores.get('base')):>14}" if tested else ""
        lines.append(f"{str(kind):<{width}}  {_acc(scores.get('family')):>14}{base}")
    return lines
