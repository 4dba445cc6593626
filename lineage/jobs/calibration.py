"""Calibration of `derived`: its false-positive rate on known-unrelated pairs, and its power on derivatives.

A p-value is a claim about a null that can be sampled, so the claim is checked on a sample: the battery of
`lineage.catalog.battery` (or any manifest with `base` and `role` columns). Every pair of models whose
lineages differ is a null pair; the weight test's pair p-value is computed for each (the suspect is the
first model of the pair in manifest order), and the false-positive rate at each level `alpha` is the share
of null pairs below it, with its exact (Clopper-Pearson) 95% interval. A valid test has a rate at or below
`alpha`; the pairs share models, so the interval is a guide, not a guarantee. Power is the share of
derivatives whose p-value against their base is below `alpha`. Verdicts are checked too: every model is
classified against the manifest's bases, and an independent model called `derived` is a false accusation.
Each test tier (the pair p-value, each group of the weight test on its own, the unit matching rule, the
verdicts) is set beside the binomial bound at each level: the count a valid test exceeds with probability 1%.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lineage.jobs.scan import ScanOptions
from lineage.refs.manifest import Manifest, read_manifest

ALPHAS: tuple[float, ...] = (0.05, 0.01, 0.001)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Rate:
    """How many of `n` p-values fell below `alpha`, with an exact 95% interval for the rate."""

    alpha: float
    hits: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "hits": self.hits, "n": self.n, "rate": self.rate, "low": self.low,
                "high": self.high}  # fmt: skip


def clopper_pearson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact two-sided binomial confidence interval for a rate of `hits` in `n`."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    tail = (1.0 - level) / 2.0
    low = 0.0 if hits == 0 else float(beta.ppf(tail, hits, n - hits + 1))
    high = 1.0 if hits == n else float(beta.ppf(1.0 - tail, hits + 1, n - hits))
    return low, high


def rates(p_values: list[float], alphas: tuple[float, ...] = ALPHAS) -> list[Rate]:
    """The share of `p_values` below each alpha, with its interval."""
    out = []
    for alpha in alphas:
        hits = sum(p < alpha for p in p_values)
        out.append(Rate(alpha, hits, len(p_values), *clopper_pearson(hits, len(p_values))))
    return out


def _kind(a: dict, b: dict) -> str:
    """The null pair's kind, for the breakdown: what makes it hard."""
    width = "" if a["width"] == b["width"] else ", other width"
    for x, y in ((a, b), (b, a)):
        if x["derivation"] == f"distilled from {y['name']}":
            return "student vs its teacher"
    if "derivative" in (a["role"], b["role"]):
        return f"derivative vs unrelated{width}"
    trained = [x["derivation"] != "random init" for x in (a, b)]
    label = "trained" if all(trained) else ("random init" if not any(trained) else "trained vs random init")
    return f"{label}, {'same' if a['layers'] == b['layers'] else 'other'} depth{width}"


def binomial_bound(n: int, alpha: float) -> int:
    """The count of `n` null p-values below `alpha` that a valid test exceeds with probability at most 1%
    (independent pairs; the battery's pairs share models, so it is a guide to the eye, not an exact law)."""
    from scipy.stats import binom

    return int(binom.ppf(0.99, n, alpha)) if n else 0


def _tier(name: str, hits: dict[float, int], n: int) -> dict:
    """One tier's false positives at each level, against the binomial bound."""
    rows = []
    for alpha in ALPHAS:
        bound = binomial_bound(n, alpha)
        rows.append({"alpha": alpha, "hits": hits[alpha], "n": n, "bound": bound, "within": hits[alpha] <= bound})
    return {"tier": name, "n": n, "rates": rows}


def _tiers(null: list[dict], groups: dict[str, list[float]], matched: list[dict], verdicts: dict) -> list[dict]:
    """The false-positive rate of each test tier at every level: the weight test's pair p-value (exact), each
    of its groups on its own (exact, before the Bonferroni factor), the unit matching rule (empirical null:
    one rule, so the same count at every level) and the verdicts (independents against the bases, corrected
    for the references)."""
    def below(ps: list[float]) -> dict[float, int]:
        return {a: sum(p < a for p in ps) for a in ALPHAS}

    out = []
    if null:
        out.append(_tier("weight test (exact), every null pair", below([x["p_value"] for x in null]), len(null)))
    for group, ps in groups.items():
        out.append(_tier(f"  group {group} (exact, uncorrected)", below(ps), len(ps)))
    if matched:
        hits = sum(m["derived"] for m in matched)
        out.append(_tier("unit matching (empirical null, one rule)", dict.fromkeys(ALPHAS, hits), len(matched)))
    if verdicts.get("independent_p_values") is not None:
        ps = verdicts["independent_p_values"]
        out.append(_tier(f"verdicts: independents vs {verdicts['references']} bases", below(ps), len(ps)))
    return out


def calibrate(manifest: str | Path | Manifest, options: ScanOptions | None = None,
              progress: Progress | None = None, blind: tuple[str, ...] = (), *, null_pairs: bool = True) -> dict:
    """Measure the derivation test on a labelled manifest (see the module docstring).

    Args:
        manifest: a manifest with `base`, `role` and `derivation` columns (the battery's).
        options: scan settings (cache, device).
        progress: fingerprinting progress.
        blind: derivations known to be invisible to the test; their power is reported apart, and they do not
            count against the verdicts' score.
        null_pairs: test every null pair (all pairs of unrelated lineages: quadratic in the battery's size, hours
            for the full battery on a busy 2-core machine); False measures the derivatives and the verdicts only,
            and `null["measured"]` says so (its pairs, rates and the tiers of the null pairs are then empty).

    Returns:
        `{"null": {"pairs", "rates", "by_kind", "by_family", "smallest"}, "matching": {...}, "power": {...},
        "power_by_family": {...}, "verdicts": {...}, "tiers": [...], "p_values": [...]}`: `by_family` holds the
        null pairs that involve a model of each family (layout), `power_by_family` each family's derivatives,
        blind spots aside;
        `matching` the unit matching test's false positives on the null pairs it can run on (an empirical null);
        `tiers` each test tier's false positives at every level against the binomial bound (`_tiers`).
    """
    from lineage.compare.identity import GROUPS, weight_test
    from lineage.compare.matching import unit_matching
    from lineage.jobs.evaluate import _fingerprints

    options = options or ScanOptions()
    manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    fps = _fingerprints(manifest, options, progress)
    rows = [r for r in manifest.rows if r.name in fps]
    info = {
        r.name: {"name": r.name, "role": r.role or "", "derivation": r.derivation or "", "root": r.base or r.name,
                 "layers": fps[r.name].summary.num_layers if fps[r.name].summary else None,
                 "width": fps[r.name].summary.hidden_size if fps[r.name].summary else None}
        for r in rows
    }  # fmt: skip
    null, by_kind, by_family, matched, groups = [], defaultdict(list), defaultdict(list), [], defaultdict(list)
    for i, a in enumerate(rows if null_pairs else []):
        for b in rows[i + 1 :]:
            if info[a.name]["root"] == info[b.name]["root"]:
                continue
            w = weight_test(fps[a.name], fps[b.name])
            p = w.p_value
            for g in w.groups:
                groups[g.name].append(g.test.p_value)
            null.append({"suspect": a.name, "reference": b.name, "p_value": p})
            m = unit_matching(fps[a.name], fps[b.name])
            if m is not None:
                matched.append({"suspect": a.name, "reference": b.name, "kind": _kind(info[a.name], info[b.name]),
                                **{k: v for k, v in m.to_dict().items() if k != "layers"}})  # fmt: skip
            by_kind[_kind(info[a.name], info[b.name])].append(p)
            for family in {a.family, b.family} - {None, ""}:  # a pair counts for each family it involves
                by_family[family].append(p)
    power, family_power = defaultdict(list), defaultdict(list)
    for r in rows:
        if r.role == "derivative" and r.base in fps:
            w = weight_test(fps[r.name], fps[r.base])
            m = unit_matching(fps[r.name], fps[r.base])
            found = {"model": r.name, "log10_p": w.log10_p, "group": w.group,
                     "groups": {g.name: g.test.log10_p for g in w.groups},
                     "matching": None if m is None else {"share": m.share, "log10_tail": m.log10_tail,
                                                         "derived": m.derived}}  # fmt: skip
            power[info[r.name]["derivation"]].append(found)
            if info[r.name]["derivation"] not in blind:
                family_power[r.family or ""].append(found)
    ps = [n["p_value"] for n in null]
    verdicts = _verdicts(manifest, fps, options, blind)
    ordered = {g: groups[g] for g in GROUPS if g in groups}
    kinds = {k: {"pairs": len(v), "rates": [x.to_dict() for x in rates(v)]} for k, v in sorted(by_kind.items())}
    families = {k: {"pairs": len(v), "rates": [x.to_dict() for x in rates(v)]} for k, v in sorted(by_family.items())}
    return {
        "null": {
            "measured": null_pairs,
            "pairs": len(null),
            "rates": [x.to_dict() for x in rates(ps)],
            "by_kind": kinds,
            "by_family": families,
            "smallest": sorted(null, key=lambda n: n["p_value"])[:5],
        },
        "matching": _matching(matched),
        "power": {k: _power(v, k in blind) for k, v in sorted(power.items())},
        "power_by_family": {k: _power(v, False) for k, v in sorted(family_power.items())},
        "verdicts": verdicts,
        "tiers": _tiers(null, ordered, matched, verdicts),
        "p_values": ps,
    }


def _matching(pairs: list[dict]) -> dict:
    """The unit matching test on the null pairs (`lineage.compare.matching`): its empirical null, measured.

    Its rule is one level, not a p-value, so one rate is reported, with the null pairs that came closest."""
    from lineage.compare.matching import EMPIRICAL_NULL, MAX_LOG10_TAIL, MIN_AGREEMENT

    hits = [m for m in pairs if m["derived"]]
    return {
        "null": EMPIRICAL_NULL,
        "rule": {"min_agreement": MIN_AGREEMENT, "max_log10_tail": MAX_LOG10_TAIL},
        "hits": len(hits),
        "pairs": len(pairs),
        "rate": len(hits) / len(pairs) if pairs else float("nan"),
        "interval": list(clopper_pearson(len(hits), len(pairs))),
        "largest_share": sorted(pairs, key=lambda m: -m["share"])[:5],
        "by_kind": {
            k: {"pairs": len(v), "hits": sum(m["derived"] for m in v), "largest_share": max(m["share"] for m in v)}
            for k, v in sorted(_group(pairs, "kind").items())
        },
        "smallest_tail": sorted(pairs, key=lambda m: m["log10_tail"])[:5],
        "false_positives": [f"{m['suspect']} ~ {m['reference']}" for m in hits],
    }


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def _power(found: list[dict], blind_spot: bool) -> dict:
    return {"models": found, "blind_spot": blind_spot,
            "derived_at": {str(a): sum(m["log10_p"] < math.log10(a) for m in found) for a in ALPHAS},
            "matching_derived": sum(bool(m["matching"] and m["matching"]["derived"]) for m in found)}  # fmt: skip


def _verdicts(manifest: Manifest, fps: dict, options: ScanOptions, blind: tuple[str, ...]) -> dict:
    """Classify every model against the manifest's bases: independents must never be `derived`."""
    refs = [r for r in manifest.references if r.name in fps]
    if not refs:
        return {}
    clf = options.classifier().fit([fps[r.name] for r in refs], [r.family for r in refs], [r.name for r in refs])
    others = [r for r in manifest.rows if r.name in fps and r.role != "base"]
    got = dict(zip((r.name for r in others), clf.predict([fps[r.name] for r in others])))
    independents = [r for r in others if r.role != "derivative"]
    derivatives = [r for r in others if r.role == "derivative" and r.derivation not in blind]
    hidden = [r for r in others if r.role == "derivative" and r.derivation in blind]
    return {
        "alpha": clf.alpha,
        "references": len(refs),
        "independents": len(independents),
        "independents_derived": sorted(r.name for r in independents if got[r.name].verdict == "derived"),
        "independent_p_values": [got[r.name].p_value for r in independents if got[r.name].p_value is not None],
        "derivatives": len(derivatives),
        "derivatives_right": sum(got[r.name].derived_from == r.base for r in derivatives),
        "derivatives_missed": sorted(r.name for r in derivatives if got[r.name].derived_from != r.base),
        "blind_spots": len(hidden),
        "blind_spots_derived": sum(got[r.name].derived_from == r.base for r in hidden),
    }


def qq_plot(p_values: list[float], path: str | Path) -> Path:
    """A QQ plot of the null p-values against the uniform, on -log10 axes, with a 95% pointwise band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import beta

    p = np.clip(np.sort(np.asarray(p_values, dtype=np.float64)), 1e-300, 1.0)
    n = len(p)
    k = np.arange(1, n + 1)
    expected = -np.log10(k / (n + 1))
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.fill_between(expected, -np.log10(beta.ppf(0.975, k, n - k + 1)), -np.log10(beta.ppf(0.025, k, n - k + 1)),
                    color="0.85", label="95% band (uniform p-values)")  # fmt: skip
    ax.plot(expected, np.minimum(-np.log10(p), expected.max() * 1.5), ".", ms=3, label=f"{n} null pairs")
    ax.plot([0, expected.max()], [0, expected.max()], "k--", lw=0.8)
    ax.set_xlabel("expected -log10 p (uniform)")
    ax.set_ylabel("observed -log10 p (weight test)")
    ax.set_title("Derivation test on unrelated pairs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
