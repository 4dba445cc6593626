"""The matching test: do two independent pairings of FFN units agree? (an *empirical* null, not an exact one)

Every symmetry that gives the weight test an exact null (`lineage.compare.identity`) is also a free disguise.
A thief who rotates the residual stream, redraws every value basis per head, permutes the FFN units *and*
flips their signs (a unit's `up` row and `down` column times -1; a gated unit's gate cannot flip) leaves all
seven groups blind: each group's signs are then the thief's coin flips. What no function-preserving map
changes is *which units belong together*. The idea is the matching test of Zhu et al., "Independence Tests
for Language Models" (ICML 2025): pair the units of suspect and reference twice, from two different
weights, each time by a statistic the whole group leaves alone, and count how often the two pairings agree.

- **By the gate**: each suspect unit's reference unit is the one whose gate profile (its responses to the
  anchor mixtures, `lineage.probe.identity`) has the largest cosine. The anchors rotate with the model, so
  a rotation leaves the profile; a permutation only reorders the units; a gate has no sign symmetry.
- **By up and down**: the reference unit whose `up` and `down` profiles, each scaled to unit norm, have the
  largest `|cos(up) + cos(down)|`. A sign flip negates both cosines at once, a positive rescaling neither:
  the absolute value sees through both, and through the rotation and permutation as the gate does.

A derivative's two pairings both find the true partner of (nearly) every unit; a stolen FFN keeps which unit
reads with which gate and writes with which `down`, whatever signs and order it is given. For independent
models each pairing is some unit of the reference, and they meet by chance: about `1/f` per unit for `f`
reference units, more where both pairings crowd onto the same few "hub" units. The chance used here is the
larger of `1/f` and `sum_j q_gate(j) * q_updown(j)`, where `q` is the share of suspect units each pairing
sends to reference unit `j` (the agreement two independent pairings with those crowds would have), and the
score is the binomial tail of the agreements against it (Hoeffding 1956: a sum of Bernoullis with mean chance
`c` has a tail no heavier than the binomial's with `c` above the mean).

**Why the null is empirical.** No symmetry of independent training makes those agreements fair coins: the gate
and up rows of one unit are trained together, and a student distilled from a teacher, or a twin trained on
the same text, can grow units whose gate and up/down profiles both resemble one of the reference's. So the
binomial tail is a score, not a p-value, and `derived` needs both an agreement share and a score far beyond
anything the null pairs of the seed-0 calibration battery show (`MIN_AGREEMENT`, `MAX_LOG10_TAIL`); its
false-positive rate is measured on the battery (`lineage evaluate calibration` prints it beside the exact
test's) rather than claimed.

**Wide FFNs.** A derivative's units find their true partner only where both fingerprints stored it: 1,024
units a layer (`lineage.probe.identity.UNIT_SAMPLE`). They are the units whose gates respond most to the
anchors (`lineage.probe.identity.profiled_units`), a function of the model that every disguise above leaves
alone, so a disguised copy stores its reference's units, whatever the FFN's width; a fine-tune or a rounding
swaps only units near the cut. (A seeded sample of positions, as before pipeline 9, capped a permuted copy's
share at `1024 / f`, below `MIN_AGREEMENT` beyond 2,048 units.)

**On the anchors, or on the weight frame.** The profiles are read on mixtures of the model's anchors, which a
tokenizer transplant takes away; each unit is also profiled on its model's weight frame (`lineage.probe.frame`,
directions its own gate rows define, paired between the two models by `lineage.compare.frames` from gate
profiles and the frame's Gram alone). Every map above leaves the frame profiles as it leaves the anchor ones,
and no embedding enters them, so the test runs on both and keeps the stronger: a rotated, sign-flipped copy
behind a new vocabulary is paired on its frame. Two looks at a null pair instead of one: the calibration
measures the rule as it is, both looks included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lineage.compare.identity import CANDIDATES, SELECT_UNITS, _gram, _layers, _subset, _unit_rows, frame_sides
from lineage.compare.signs import stable
from lineage.fingerprint.format import Fingerprint

#: What the verdict and its JSON call this test's null.
EMPIRICAL_NULL = "empirical null"
#: Fewest suspect units the two pairings must be compared on before the test says anything.
MIN_UNITS = 64
#: `derived` needs at least this share of agreeing units (chosen on the seed-0 battery: see README "Limits").
MIN_AGREEMENT = 0.5
#: ... and a binomial tail below 10 to this power against the chance agreement.
MAX_LOG10_TAIL = -50.0


@dataclass(frozen=True)
class Matching:
    """The matching test of one pair.

    Attributes:
        units: suspect units compared (summed over the matched layers).
        agreements: units whose two pairings name the same reference unit.
        chance: the mean chance agreement per unit (module docstring).
        log10_tail: log10 of the binomial tail `P(Bin(units, chance) >= agreements)`: a score, not a p-value.
        layers: `(suspect layer, reference layer, share of agreeing units)` per matched layer.
        profiles: what the units' profiles were read on: `anchors` (mixtures of the anchors) or `frame`.
    """

    units: int
    agreements: int
    chance: float
    log10_tail: float
    layers: tuple[tuple[int, int, float], ...] = ()
    profiles: str = "anchors"

    @property
    def share(self) -> float:
        """The share of agreeing units."""
        return self.agreements / self.units if self.units else 0.0

    @property
    def derived(self) -> bool:
        """Whether the pair passes the empirical rule: enough units, a share and a score far beyond the null."""
        return self.units >= MIN_UNITS and self.share >= MIN_AGREEMENT and self.log10_tail < MAX_LOG10_TAIL

    def rule(self) -> str:
        """The rule as one line (for a verdict)."""
        return (
            f"unit matching ({EMPIRICAL_NULL}): the gate and up/down pairings of FFN units (profiled on the "
            f"{self.profiles}) agree for {self.agreements}/{self.units} units ({self.share:.1%}; chance "
            f"{self.chance:.2%}, binomial tail 1e{self.log10_tail:.0f}); derived needs >= {MIN_AGREEMENT:.0%} "
            f"and < 1e{MAX_LOG10_TAIL:.0f}"
        )

    def to_dict(self) -> dict:
        return {
            "null": EMPIRICAL_NULL,
            "profiles": self.profiles,
            "units": self.units,
            "agreements": self.agreements,
            "share": self.share,
            "chance": self.chance,
            "log10_tail": self.log10_tail,
            "derived": self.derived,
            "min_agreement": MIN_AGREEMENT,
            "max_log10_tail": MAX_LOG10_TAIL,
            "layers": [{"layer": a, "reference_layer": b, "agreement": c} for a, b, c in self.layers],
        }


def unit_matching(a: Fingerprint, b: Fingerprint) -> Matching | None:
    """The matching test of `a` (suspect) against `b` (reference), on the anchor profiles and on the weight frame's,
    the derived one kept, else the one of the larger share; rule in the module docstring.

    Args:
        a, b: fingerprints made by lineage.

    Returns:
        The test, or None where it cannot run: no gated FFN units on one side, profiles read on other anchor
        kinds or numbers of mixtures and no frame on one side, fewer than `MIN_UNITS` units.
    """
    if not (a.identity and b.identity):
        return None
    looks = []
    if a.anchor_basis == b.anchor_basis:
        sides = [[_layers(fp, k) for k in ("gate", "up", "down")] for fp in (a, b)]
        looks.append(_matching(*sides, "anchors"))
    sides = frame_sides(a, b)
    if sides is not None:
        looks.append(_matching(*sides, "frame"))
    looks = [m for m in looks if m is not None]
    return max(looks, key=lambda m: (m.derived, m.share), default=None)


def _matching(side_a: list[dict], side_b: list[dict], profiles: str) -> Matching | None:
    """The test on one kind of profiles (`side_*`: `{layer: profiles}` of `gate`, `up`, `down`, columns alike)."""
    (ga, ua, da), (gb, ub, db) = side_a, side_b
    if not (ga and gb) or next(iter(ga.values())).shape[1] != next(iter(gb.values())).shape[1]:
        return None
    ib = list(gb)
    grams_b = np.stack([_gram(gb[j]) for j in ib])
    gate_b = {j: _unit_rows(gb[j]) for j in ib}
    sig_b = {j: _signature(ub[j], db[j]) for j in ib}
    units = agreements = 0
    expected = 0.0
    layers = []
    for i, g in ga.items():
        gate_a = _unit_rows(g)
        j = _reference_layer(g, gate_a, grams_b, gate_b, ib)
        by_gate = (gate_a @ gate_b[j].T).argmax(1)
        by_sign = np.abs(_signature(ua[i], da[i]) @ sig_b[j].T).argmax(1)
        agree = int((by_gate == by_sign).sum())
        units += len(by_gate)
        agreements += agree
        expected += len(by_gate) * chance_agreement(by_gate, by_sign, len(gate_b[j]))
        layers.append((i, j, stable(agree / len(by_gate))))
    if units < MIN_UNITS:
        return None
    chance = min(expected / units, 1.0)
    return Matching(units, agreements, chance, _log10_tail(agreements, units, chance), tuple(layers), profiles)


def chance_agreement(first: np.ndarray, second: np.ndarray, f: int) -> float:
    """The chance that two pairings of the same units into `f` reference units agree on a unit: the larger of
    `1/f` and `sum_j q1(j) q2(j)`, with `q` the share of units each pairing sends to reference unit `j` (what
    two independent pairings crowding onto the reference units as these do would agree on).

    Example:
        >>> chance_agreement(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0]), 64)
        0.625
    """
    crowd = np.bincount(first, minlength=f) @ np.bincount(second, minlength=f) / len(first) ** 2
    return max(1.0 / f, float(crowd))


def _signature(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """`[units, 2M]`: the unit-norm up and down profiles side by side, over sqrt 2 (a flip negates the whole row,
    a positive rescaling of `up` against `down` changes nothing)."""
    return np.concatenate([_unit_rows(up), _unit_rows(down)], axis=1) / math.sqrt(2.0)


def _reference_layer(g: np.ndarray, gate_a: np.ndarray, grams_b: np.ndarray, gate_b: dict, ib: list[int]) -> int:
    """The reference layer of suspect layer `g`, from the gate alone, as the FFN-unit group chooses it: the
    candidates with the closest gate Gram, then the best unit matches of a fixed sample of units."""
    cands = np.argsort(-(grams_b @ _gram(g)), kind="stable")[:CANDIDATES]
    probe = gate_a[_subset(len(gate_a), SELECT_UNITS)]
    return ib[int(max(cands, key=lambda c: (probe @ gate_b[ib[c]].T).max(1).mean()))]


def _log10_tail(k: int, n: int, p: float) -> float:
    """log10 `P(Bin(n, p) >= k)`, summed term by term in logs: exact far below where `binom.sf` underflows."""
    from scipy.special import logsumexp
    from scipy.stats import binom

    if k <= 0:
        return 0.0
    log_tail = float(logsumexp(binom.logpmf(np.arange(k, n + 1), n, p)))
    return stable(min(0.0, log_tail / math.log(10.0)))
