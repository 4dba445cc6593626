"""The scan's levels: Benjamini-Hochberg across the suspects (`--fdr Q`) and the false accusations expected.

`alpha` is the derivation test's level per suspect (`FamilyClassifier(alpha=...)`). With `--fdr Q` a scan
adds a second condition after classification: a suspect stays `derived` only if its p-value also passes
Benjamini-Hochberg at level Q across every suspect that was tested (`lineage.decide.fdr`), so the expected
share of false accusations among the derived is at most Q however many suspects there are. A suspect that
fails it is judged again as not derived (related or unknown, by the same rule and distances), and its rule
text says why. The BH step can only take `derived` verdicts away, never add one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from lineage.decide.fdr import benjamini_hochberg_log10, expected_false_accusations
from lineage.decide.pvalues import format_p
from lineage.decide.verdict import DERIVED


def log10_p(verdict: object) -> float | None:
    """A verdict's p-value as a base-10 logarithm (its `log10_p` when it has one), None when untested."""
    exact = getattr(verdict, "log10_p", None)
    if exact is not None:
        return float(exact)
    p = getattr(verdict, "p_value", None)
    if p is None:
        return None
    return math.log10(p) if p > 0.0 else -math.inf


def _empirical(verdict: object) -> bool:
    return bool(getattr(verdict, "empirical", False))


def apply_fdr(verdicts: Sequence, q: float, rejudge: Callable[[list[int], float], list]) -> list:
    """Keep `derived` only where Benjamini-Hochberg at `q` passes too; judge the others again.

    Args:
        verdicts: the suspects' verdicts, in order.
        q: the false discovery rate.
        rejudge: `rejudge(indices, alpha)` -> the verdicts of those suspects under a per-suspect level
            `alpha` at which none of them is derived (a classifier fitted on the same references).

    Returns:
        The verdicts, in order: the derived that pass BH with a rule saying so, the others as `rejudge`
        gave them with a rule saying why they are no longer derived.
    """
    logs = [log10_p(v) for v in verdicts]
    passed = benjamini_hochberg_log10(logs, q)
    tested = sum(x is not None for x in logs)
    where = f"Benjamini-Hochberg at q={q:g} across {tested} tested suspects"
    out = list(verdicts)
    # A verdict derived on the unit matching test's empirical null has no p-value behind it for BH to judge.
    failed = [i for i, v in enumerate(verdicts) if v.verdict == DERIVED and not passed[i] and not _empirical(v)]
    for i, v in enumerate(verdicts):
        if v.verdict == DERIVED and passed[i] and not _empirical(v):
            out[i] = replace(v, rule=f"{v.rule}; passes {where}", threshold={**v.threshold, "fdr": q})
    if failed:
        lowest = min(logs[i] for i in failed)
        alpha = max(10.0**lowest * (1.0 - 1e-9), 1e-300)  # just below the smallest that fails: none derived
        for i, again in zip(failed, rejudge(failed, alpha)):
            p = format_p(verdicts[i].p_value, getattr(verdicts[i], "log10_p", None))
            rule = f"not derived: p={p} passes alpha but not {where}; so {again.rule}"
            out[i] = replace(again, rule=rule, threshold={**verdicts[i].threshold, "fdr": q})
    return out


def level_summary(verdicts: Sequence, alpha: float, q: float | None) -> dict:
    """The levels a scan used and the false accusations they let through, at most, in expectation.

    Returns:
        `{"alpha", "fdr", "tested", "derived", "expected_false_accusations", "text"}`.
    """
    tested = sum(log10_p(v) is not None for v in verdicts)
    empirical = sum(_empirical(v) for v in verdicts)
    derived = sum(v.verdict == DERIVED for v in verdicts) - empirical
    bound = expected_false_accusations(derived, tested, alpha, q)
    if tested == 0:
        text = "no derivation test ran: no suspect can be called derived"
    else:
        by_q = q is not None and q * derived < alpha * tested
        how = f"q x derived = {q:g} x {derived}" if by_q else f"alpha x tested suspects = {alpha:g} x {tested}"
        rule = f"alpha {alpha:g} per suspect" + (f", Benjamini-Hochberg q={q:g} across suspects" if q else "")
        text = f"{rule}: {derived} derived; expected false accusations at most {bound:.3g} ({how})"
        if empirical:
            text += f"; {empirical} more derived on the unit matching test's empirical null (not in that bound)"
    return {
        "alpha": alpha,
        "fdr": q,
        "tested": tested,
        "derived": derived,
        "expected_false_accusations": bound,
        "text": text,
    }
