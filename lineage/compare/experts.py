"""Which experts matched which: the FFN-unit test's pairing of units, read back per expert.

The FFN-unit test (`lineage.compare.identity`) pools a mixture-of-experts layer's units (every expert's, the
shared expert's, a dense FFN's) and pairs each suspect unit with the reference unit of the closest gate profile,
whatever expert either sits in: expert order is one more symmetry it does not see. The fingerprint records each
unit's expert (`unit_expert`, `lineage.probe.identity`), so the pairing says, per suspect expert, which
reference FFN most of its units found (a reference expert, the shared expert, or the dense FFN a sparse upcycle
copied its experts from), what share of its units went there, and how strongly they agree: the mean of their
agreement terms, and those terms' own sign test.

This is evidence, not the verdict: the pair's p-value stays the pooled test's. Each expert's sign test is exact
on its own (the pairing looks only at gate profiles, which no sign flip changes), uncorrected for the number of
experts shown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lineage.compare.signs import sign_test, stable
from lineage.probe.identity import DENSE_FFN, SHARED_EXPERT

#: Experts a verdict's rule names (the evidence lists every one).
RULE_EXPERTS = 8


def block_name(label: int) -> int | str:
    """A unit's FFN as the evidence names it: the routed expert's index, `ffn` (dense) or `shared`."""
    return {DENSE_FFN: "ffn", SHARED_EXPERT: "shared"}.get(label, label)


@dataclass(frozen=True)
class ExpertPair:
    """One suspect FFN (an expert, the shared expert or a dense FFN) and the reference FFN its units matched.

    Attributes:
        expert / reference_expert: `block_name`s.
        units: the suspect FFN's profiled units.
        share: the fraction of them whose best reference unit lies in `reference_expert`.
        agreement: the mean agreement term of its units (about 1 for a copy, 0 for unrelated FFNs).
        log10_p: the sign test of its units' terms.
    """

    expert: int | str
    reference_expert: int | str
    units: int
    share: float
    agreement: float
    log10_p: float

    def to_dict(self) -> dict:
        return {"expert": self.expert, "reference_expert": self.reference_expert, "units": self.units,
                "share": self.share, "agreement": self.agreement, "log10_p": self.log10_p}  # fmt: skip


@dataclass(frozen=True)
class LayerExperts:
    """The expert pairs of one suspect layer and the reference layer it was matched to."""

    layer: int
    reference_layer: int
    pairs: tuple[ExpertPair, ...]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "reference_layer": self.reference_layer,
                "experts": [p.to_dict() for p in self.pairs]}  # fmt: skip


def pair_experts(
    layers: tuple[int, int], labels: tuple[np.ndarray | None, np.ndarray | None], match: np.ndarray,
    terms: np.ndarray, keys: np.ndarray,
) -> LayerExperts:  # fmt: skip
    """Read one layer's unit pairing back per suspect expert.

    Args:
        layers: `(suspect layer, reference layer)`.
        labels: each side's `unit_expert` for that layer, or None for a dense layer (every unit `DENSE_FFN`).
        match: for every stored suspect unit, the index of its reference unit (by gate profile).
        terms: every suspect unit's agreement term with that unit.
        keys: every term's sign (its unit on the side whose signs the null flips): terms of one key add up.

    Returns:
        The pairs, routed experts first (by index), then the shared expert and a dense FFN.
    """
    la = np.full(len(match), DENSE_FFN) if labels[0] is None else np.rint(labels[0]).astype(np.int64)
    lb = None if labels[1] is None else np.rint(labels[1]).astype(np.int64)
    found = np.full(len(match), DENSE_FFN) if lb is None else lb[match]
    pairs = []
    for label in sorted(set(la.tolist()), key=lambda v: (v < 0, -v if v < 0 else v)):
        mine = la == label
        values, counts = np.unique(found[mine], return_counts=True)
        best = int(values[np.argmax(counts)])  # the most matched; ties to the lowest label
        summed: dict[int, float] = defaultdict(float)
        for k, f in zip(keys[mine].tolist(), terms[mine].tolist()):
            summed[k] += f
        pairs.append(ExpertPair(
            block_name(int(label)), block_name(best), int(mine.sum()), stable(float(counts.max() / mine.sum())),
            stable(float(terms[mine].mean())), sign_test(np.fromiter(summed.values(), float)).log10_p,
        ))  # fmt: skip
    return LayerExperts(layers[0], layers[1], tuple(pairs))


def experts_sentence(layers: list[dict], reference: str) -> str | None:
    """The pairing in one clause, from the evidence's `experts` (`LayerExperts.to_dict` of each layer): for a
    verdict's rule and the line under a table; None when there is none, or only dense FFNs met.

    Every layer's pairs are in the evidence; the clause names them once when every layer pairs alike (a
    fine-tune whose experts were shuffled: the same permutation in every layer), else the first layer's.
    """
    if not layers or all(p["expert"] == p["reference_expert"] == "ffn" for lay in layers for p in lay["experts"]):
        return None
    first = layers[0]["experts"]
    mapping = [(p["expert"], p["reference_expert"]) for p in first]
    alike = all([(p["expert"], p["reference_expert"]) for p in lay["experts"]] == mapping for lay in layers)
    shown = first[:RULE_EXPERTS]
    pairs = ", ".join(f"{p['expert']}->{p['reference_expert']} ({p['agreement']:.2f})" for p in shown)
    more = f", ... ({len(first)} in all)" if len(first) > len(shown) else ""
    where = f"alike in all {len(layers)} layers" if alike else "differently by layer"
    where += f"; layer {layers[0]['layer']}"
    return f"experts paired with {reference}'s (suspect->reference, agreement) {where}: {pairs}{more}"
