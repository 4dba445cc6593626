"""The weight test: do two models share the arbitrary coordinates their initialisation fixed?

Two models trained independently on the same data with the same tokenizer learn similar *functions*; what
they never share is the arbitrary part of their weights, the coordinates that random initialisation fixed
and training only nudged. A derivative keeps them: fine-tuning, LoRA, merging, quantisation, pruning, layer
surgery and vocabulary edits move weights, they do not redraw them.

**The null is a symmetry, not an assumption.** Flipping the sign of one residual coordinate of a model
(its embedding column, and that coordinate in every matrix reading or writing the residual stream) is a
symmetry of the distribution of independently trained RMSNorm models: the Gaussian initialisation is
symmetric, and RMSNorm, Adam-style optimisers and weight decay commute with it. So is flipping one gated
FFN unit (its `up` row with its `down` column) and one value dimension (its `v` row with the `o_proj`
columns that read it). The fingerprint stores responses that change sign with these flips
(`lineage.probe.identity`). For each symmetry the test sums one agreement term `f` per flipped coordinate
or unit (a cosine between the two models' responses there, over the anchors or anchor mixtures they
share); if the models are independent, the signs of those terms are fair coins whatever their sizes, and
`lineage.compare.signs` bounds the p-value of the sum exactly, in any sample and at any depth of the
tail. Whatever biases two unrelated models share (their data, their tokenizer, their layout, a common
component of their gates) is even under the flip and cancels.

**Searching is free where it only looks at what the flip leaves alone.** Which layers to compare, and
which units, is chosen from quantities every flip leaves unchanged: `|f|` for the residual and value
tests, and the `gate` profiles for the FFN-unit test (a gate row has no sign symmetry: SiLU and GELU are
not odd). Conditional on those choices the signs are still fair coins, so the p-value needs no correction
for the search, however large: every layer of the suspect picks its best layer of the reference, so
pruned, duplicated (up-scaled) and reordered layers line up, at any two depths. So do residual coordinates
and value dimensions at two widths (a width-pruned suspect, `lineage.compare.widths`): they are paired one
to one from `|cos|` alone, so each term still changes sign with one flip of each side and no other.

**Seven groups, one Bonferroni correction.** Residual coordinates over the embedding and head rows, over
the attention blocks' value-output writes and over the FFN blocks' writes (these survive every edit of
heads and units: MergeLock maps, neuron permutations and rescaling, norm folding); FFN units, matched by
their gate profile (these follow a rotation of the residual stream, and a neuron permutation); value
dimensions (rotation again); the *seeded* residual group: per read coordinate, the attention and FFN
writes of every layer on seeded residual inputs that are zero at the read coordinates
(`lineage.probe.identity.seeded_split`). A flip of read coordinates leaves those inputs alone and flips only
the writes there, so its terms are fair coins under the same symmetry; it does not start from the model's
embedding, so layers under a replaced embedding, or behind a vocabulary that shares too few anchors for the
other residual groups, are still tested. And the *frame* units: FFN units again, profiled on directions each
model's own gate rows define (`lineage.probe.frame`) instead of its anchors, the two frames paired first
(`lineage.compare.frames`), so neither a new embedding nor a rotation of the residual stream, nor both at
once, hides them; a unit's sign flip negates its own term and nothing the frame, the pairing or the choice of
layers reads. The pair's p-value is the smallest group's times the number of groups tested. Only a disguise
that at once rotates the residual stream and redraws every unit's sign or basis (a rotation, plus per-head
invertible maps, plus FFN sign flips) leaves all seven blind: no exact test can see through every symmetry
of the architecture, because each one is also a free disguise. The unit matching test
(`lineage.compare.matching`) sees that disguise, on an empirical null.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lineage.compare.experts import LayerExperts, pair_experts
from lineage.compare.frames import pair_frames
from lineage.compare.signs import SignTest, sign_test, stable
from lineage.compare.similarity import shared_positions
from lineage.compare.widths import paired_coordinates, paired_units
from lineage.compare.widths import unit_rows as _unit_rows
from lineage.fingerprint.format import Fingerprint

MIN_SHARED_ANCHORS = 8
MIN_SIGNS = 8  # a group with fewer independent signs is not tested
SELECT_UNITS = 64  # suspect units whose matches choose the reference layer of the FFN-unit test
TEST_UNITS = 256  # suspect units per layer the FFN-unit test sums over
CANDIDATES = 3  # reference layers per suspect layer scored by unit matching (preselected by gate Gram)
GROUPS: tuple[str, ...] = (
    "embedding", "attention", "ffn", "ffn units", "value units", "seeded residual", "frame units",
)  # fmt: skip


@dataclass(frozen=True)
class GroupResult:
    """One group's sign test and the layers it matched.

    Attributes:
        name: one of `GROUPS`.
        test: the sign test.
        layers: `(suspect layer, reference layer, mean agreement term)` per matched layer.
    """

    name: str
    test: SignTest
    layers: tuple[tuple[int, int, float], ...] = ()
    experts: tuple[LayerExperts, ...] = ()

    def to_dict(self) -> dict:
        out = {
            "group": self.name,
            **self.test.to_dict(),
            "layers": [{"layer": a, "reference_layer": b, "agreement": c} for a, b, c in self.layers],
        }
        if self.experts:
            out["experts"] = [e.to_dict() for e in self.experts]
        return out


@dataclass(frozen=True)
class WeightTest:
    """The weight test of one pair.

    Attributes:
        log10_p: log10 of the pair's p-value (smallest group's, Bonferroni over the groups tested); 0 when
            nothing could be tested.
        group: the group with the smallest p-value, None when none was tested.
        groups: every group tested.
    """

    log10_p: float
    group: str | None
    groups: tuple[GroupResult, ...]

    @property
    def p_value(self) -> float:
        """The p-value as a float (it underflows to 0.0 below about 1e-308: use `log10_p`)."""
        return 10.0**self.log10_p

    @property
    def best(self) -> GroupResult | None:
        return next((g for g in self.groups if g.name == self.group), None)

    @property
    def experts(self) -> tuple[LayerExperts, ...]:
        """Which suspect experts matched which reference FFNs, per layer (`lineage.compare.experts`); empty
        when neither model is a mixture of experts or the FFN-unit group was not tested."""
        return next((g.experts for g in self.groups if g.name == "ffn units"), ())

    def to_dict(self) -> dict:
        best = self.best
        out = {
            "log10_p": self.log10_p,
            "p_value": self.p_value,
            "group": self.group,
            "agreement": best.test.mean if best else 0.0,
            "layers": best.to_dict()["layers"] if best else [],
            "groups": [g.to_dict() for g in self.groups],
        }
        if self.experts:
            out["experts"] = [e.to_dict() for e in self.experts]
        return out


NO_MATCH = WeightTest(0.0, None, ())


def weight_test(a: Fingerprint, b: Fingerprint) -> WeightTest:
    """The weight test of `a` (suspect) against `b` (reference); rule in the module docstring.

    Args:
        a, b: fingerprints with identity responses (fingerprints made by lineage; feature files have none).

    Returns:
        The test; `NO_MATCH` when no group could be tested (other widths and no shared anchors, say).
    """
    if not (a.identity and b.identity and a.anchors is not None and b.anchors is not None):
        return NO_MATCH
    keep_a, keep_b = shared_positions(a, b)
    groups: list[GroupResult] = []
    residual = _symmetric(a, b, "residual")
    same_width = _width(a) == _width(b)
    if len(keep_a) >= MIN_SHARED_ANCHORS and residual:
        groups += _residual_groups(a, b, keep_a, keep_b, same_width)
    if a.anchor_basis == b.anchor_basis:  # unit profiles are read on mixtures of one kind of anchor
        if _symmetric(a, b, "ffn"):
            groups += _ffn_units(a, b)
        groups += _value_units(a, b)
    if residual and same_width:  # read on seeded inputs (no anchor needs to be shared), seeded by the width
        groups += _seeded_residual(a, b)
    if _symmetric(a, b, "ffn"):  # read on each model's weight frame: no anchor, any width
        groups += _frame_units(a, b)
    groups = [g for g in groups if g.test.signs >= MIN_SIGNS]
    if not groups:
        return NO_MATCH
    best = min(groups, key=lambda g: (g.test.log10_p, GROUPS.index(g.name)))
    log10_p = min(0.0, stable(best.test.log10_p + math.log10(len(groups))))
    return WeightTest(log10_p, best.name, tuple(groups))


def _width(fp: Fingerprint) -> int | None:
    return fp.summary.hidden_size if fp.summary is not None else None


def _symmetric(a: Fingerprint, b: Fingerprint, symmetry: str) -> bool:
    """Whether the symmetry holds for at least one side (the side whose signs the null flips)."""
    return any(symmetry in fp.settings.get("symmetry", ()) for fp in (a, b))


def _layers(fp: Fingerprint, kind: str) -> dict[int, np.ndarray]:
    """`{layer: float64 array}` of one per-layer identity response."""
    out = {}
    for key, arr in fp.identity.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "layers" and parts[2] == kind:
            out[int(parts[1])] = np.asarray(arr, dtype=np.float64)
    return dict(sorted(out.items()))


def _frobenius(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 0 else x


# -- residual coordinates ---------------------------------------------------------------------------


def _coordinate_terms(xa: list[np.ndarray], xb: list[np.ndarray]) -> np.ndarray:
    """Per residual coordinate, the cosine of the two sides' columns stacked over the given blocks."""
    a = np.concatenate([_frobenius(x) for x in xa], axis=0)
    b = np.concatenate([_frobenius(x) for x in xb], axis=0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    ok = (na > 0) & (nb > 0)
    return np.where(ok, (a * b).sum(0) / np.where(ok, na * nb, 1.0), 0.0)


def _residual_groups(
    a: Fingerprint, b: Fingerprint, keep_a: np.ndarray, keep_b: np.ndarray, same_width: bool = True
) -> list[GroupResult]:
    """The embedding, attention and FFN groups: one term per stored residual coordinate (at one width) or per
    pair of coordinates (at two widths, paired by `lineage.compare.widths` from `|cos|` alone)."""
    out = []
    blocks_a, blocks_b = [a.identity["embed"][keep_a]], [b.identity["embed"][keep_b]]
    if "head" in a.identity or "head" in b.identity:  # a tied head is the embedding
        blocks_a.append(a.identity.get("head", a.identity["embed"])[keep_a])
        blocks_b.append(b.identity.get("head", b.identity["embed"])[keep_b])
    blocks_a, blocks_b = [x.astype(np.float64) for x in blocks_a], [x.astype(np.float64) for x in blocks_b]
    va, fa = ({i: x[keep_a] for i, x in _layers(a, k).items()} for k in ("resid_vo", "resid_ffn"))
    vb, fb = ({j: x[keep_b] for j, x in _layers(b, k).items()} for k in ("resid_vo", "resid_ffn"))
    if not same_width:
        writes_a, writes_b = [(va[i], fa[i]) for i in va if i in fa], [(vb[j], fb[j]) for j in vb if j in fb]
        ca, cb = paired_coordinates(np.concatenate(blocks_a), np.concatenate(blocks_b), writes_a, writes_b)
        blocks_a, blocks_b = [x[:, ca] for x in blocks_a], [x[:, cb] for x in blocks_b]
        va, fa = ({i: x[:, ca] for i, x in d.items()} for d in (va, fa))
        vb, fb = ({j: x[:, cb] for j, x in d.items()} for d in (vb, fb))
    out.append(GroupResult("embedding", sign_test(_coordinate_terms(blocks_a, blocks_b))))
    if not (va and vb and fa and fb):
        return out
    pairs = _paired_layers((va, fa), (vb, fb))
    for name, da, db in (("attention", va, vb), ("ffn", fa, fb)):
        per_layer = [_coordinate_terms([da[i]], [db[j]]) for i, j in pairs]
        terms = _coordinate_terms([da[i] for i, _ in pairs], [db[j] for _, j in pairs])
        layers = tuple((i, j, stable(float(t.mean()))) for (i, j), t in zip(pairs, per_layer))
        out.append(GroupResult(name, sign_test(terms), layers))
    return out


def _paired_layers(blocks_a: tuple[dict, ...], blocks_b: tuple[dict, ...]) -> list[tuple[int, int]]:
    """`(suspect layer, reference layer)` for every suspect layer: the reference layer whose responses (each
    block's `[rows, C]` per layer, stacked) agree best in `|cos|` per residual coordinate, summed over them.

    `|cos|` is blind to every coordinate's sign, so the choice costs the sign test no correction.
    """
    ia = [i for i in blocks_a[0] if all(i in d for d in blocks_a)]
    ib = [j for j in blocks_b[0] if all(j in d for d in blocks_b)]

    def stacked(blocks: tuple[dict, ...], layers: list[int]) -> np.ndarray:  # [L, C, rows of every block]
        return np.stack([np.concatenate([_frobenius(d[i]) for d in blocks]).T for i in layers])

    sa, sb = _unit_rows(stacked(blocks_a, ia)), _unit_rows(stacked(blocks_b, ib))
    score = np.abs(np.einsum("ick,jck->ijc", sa, sb)).sum(-1)  # |cos| per coordinate: blind to the signs
    return [(ia[p], ib[q]) for p, q in enumerate(score.argmax(1))]


def _seeded_residual(a: Fingerprint, b: Fingerprint) -> list[GroupResult]:
    """One term per read coordinate: the cosine of the two models' attention and FFN writes there, on the seeded
    inputs, over every matched layer. No anchor enters, so the embedding in front of the layers does not."""
    va, fa = _layers(a, "seeded_vo"), _layers(a, "seeded_ffn")
    vb, fb = _layers(b, "seeded_vo"), _layers(b, "seeded_ffn")
    if not (va and vb and fa and fb) or next(iter(fa.values())).shape != next(iter(fb.values())).shape:
        return []
    pairs = _paired_layers((va, fa), (vb, fb))
    per_layer = [_coordinate_terms([va[i], fa[i]], [vb[j], fb[j]]) for i, j in pairs]
    terms = _coordinate_terms([*(va[i] for i, _ in pairs), *(fa[i] for i, _ in pairs)],
                              [*(vb[j] for _, j in pairs), *(fb[j] for _, j in pairs)])  # fmt: skip
    layers = tuple((i, j, stable(float(t.mean()))) for (i, j), t in zip(pairs, per_layer))
    return [GroupResult("seeded residual", sign_test(terms), layers)]


# -- units --------------------------------------------------------------------------------------------


def _cos_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two equally shaped arrays."""
    return (_unit_rows(x) * _unit_rows(y)).sum(-1)


def _subset(n: int, k: int) -> np.ndarray:
    """`k` evenly spread positions of `n` (all when `n <= k`): a fixed sample of the stored units (themselves a
    seeded sample of the FFN), the same for every pair."""
    return np.arange(n) if n <= k else np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _gram(g: np.ndarray) -> np.ndarray:
    """A layer's unit-order-free summary: the normalised Gram of its gate profiles over the mixtures."""
    m = g.T @ g
    m = m - m.mean()
    return m.ravel() / max(float(np.linalg.norm(m)), 1e-30)


def _ffn_units(a: Fingerprint, b: Fingerprint) -> list[GroupResult]:
    """FFN units profiled on the anchor mixtures, matched by gate; the experts matched read back beside them."""
    side_a, side_b = ([_layers(fp, k) for k in ("gate", "up", "down")] for fp in (a, b))
    return _unit_group("ffn units", a, b, side_a, side_b, (_layers(a, "unit_expert"), _layers(b, "unit_expert")))


def frame_sides(a: Fingerprint, b: Fingerprint) -> tuple[list[dict], list[dict]] | None:
    """Both models' unit profiles on their weight frames (`{layer: profiles}` of `gate`, `up`, `down`), the
    columns paired (`lineage.compare.frames`, from gate profiles and the frames' Grams alone); None where one
    has no frame."""
    if "frame" not in a.identity or "frame" not in b.identity:
        return None
    side_a, side_b = ([_layers(fp, f"frame_{k}") for k in ("gate", "up", "down")] for fp in (a, b))
    if not (side_a[0] and side_b[0]):
        return None
    ca, cb = pair_frames(a.identity["frame"], b.identity["frame"], side_a[0], side_b[0])
    return [{i: x[:, ca] for i, x in d.items()} for d in side_a], [{j: x[:, cb] for j, x in d.items()} for d in side_b]


def _frame_units(a: Fingerprint, b: Fingerprint) -> list[GroupResult]:
    """FFN units profiled on each model's weight frame (`lineage.probe.frame`): no anchor enters, so neither a
    new embedding nor a rotation hides them."""
    sides = frame_sides(a, b)
    return [] if sides is None else _unit_group("frame units", a, b, *sides)


def _unit_group(name: str, a: Fingerprint, b: Fingerprint, side_a: list[dict], side_b: list[dict],
                experts_of: tuple[dict, dict] = ({}, {})) -> list[GroupResult]:  # fmt: skip
    """One term per suspect unit (`side_*`: `{layer: profiles}` of `gate`, `up`, `down`, columns alike): the mean
    cosine of its `up` and `down` profiles with those of the reference unit whose `gate` profile is closest, in
    the reference layer whose units match best. Gates choose everything, so the terms' signs are fair coins."""
    (ga, ua, da), (gb, ub, db) = side_a, side_b
    if not (ga and gb) or next(iter(ga.values())).shape[1] != next(iter(gb.values())).shape[1]:
        return []
    flip_a = "ffn" in a.settings.get("symmetry", ())  # whose unit signs the null flips (see _symmetric)
    ib = list(gb)
    grams_b = np.stack([_gram(gb[j]) for j in ib])
    nb = {j: _unit_rows(gb[j]) for j in ib}
    ea, eb = experts_of
    terms: dict[tuple[int, int], float] = defaultdict(float)
    layers, experts = [], []
    for i, g in ga.items():
        na = _unit_rows(g)
        # Which reference layer: the candidates whose gate Gram is closest, then the best unit matches.
        cands = np.argsort(-(grams_b @ _gram(g)), kind="stable")[:CANDIDATES]
        probe = na[_subset(len(na), SELECT_UNITS)]
        j = ib[int(max(cands, key=lambda c: (probe @ nb[ib[c]].T).max(1).mean()))]
        rows = _subset(len(na), TEST_UNITS)
        match = (na[rows] @ nb[j].T).argmax(1)  # each suspect unit's reference unit, by gate alone
        f = 0.5 * (_cos_rows(ua[i][rows], ub[j][match]) + _cos_rows(da[i][rows], db[j][match]))
        for r, m, v in zip(rows, match, f):
            terms[(i, int(r)) if flip_a else (j, int(m))] += float(v)
        layers.append((i, j, stable(float(f.mean()))))
        if i in ea or j in eb:  # evidence only: every stored unit paired the same way, read back per expert
            every = (na @ nb[j].T).argmax(1)
            f_every = 0.5 * (_cos_rows(ua[i], ub[j][every]) + _cos_rows(da[i], db[j][every]))
            keys = np.arange(len(na)) if flip_a else every
            experts.append(pair_experts((i, j), (ea.get(i), eb.get(j)), every, f_every, keys))
    test = sign_test(np.fromiter(terms.values(), float))
    return [GroupResult(name, test, tuple(layers), tuple(experts))]


def _value_units(a: Fingerprint, b: Fingerprint) -> list[GroupResult]:
    va, oa, vb, ob = _layers(a, "v"), _layers(a, "o"), _layers(b, "v"), _layers(b, "o")
    if not (va and vb) or next(iter(va.values())).shape[1] != next(iter(vb.values())).shape[1]:
        return []
    if next(iter(va.values())).shape != next(iter(vb.values())).shape:
        return _paired_value_units(va, oa, vb, ob)
    ib = list(vb)
    terms, layers = [], []
    for i in va:
        # Every value dimension against the same dimension of each reference layer: the layer with the
        # largest |agreement| is chosen (blind to the signs), and the suspect's signs are summed.
        f = np.stack([0.5 * (_cos_rows(va[i], vb[j]) + _cos_rows(oa[i], ob[j])) for j in ib])
        q = int(np.abs(f).sum(1).argmax())
        terms.append(f[q])
        layers.append((i, ib[q], stable(float(f[q].mean()))))
    return [GroupResult("value units", sign_test(np.concatenate(terms)), tuple(layers))]


def _paired_value_units(va: dict, oa: dict, vb: dict, ob: dict) -> list[GroupResult]:
    """Value units of layers with different counts of value dimensions (heads pruned): per suspect layer, the
    reference layer whose one-to-one pairing of dimensions (`lineage.compare.widths.paired_units`, from `|cos|`
    alone) scores best, then one term per pair."""
    terms, layers = [], []
    for i in va:
        j, (ra, rb, _) = max(((j, paired_units(va[i], oa[i], vb[j], ob[j])) for j in vb), key=lambda t: t[1][2])
        f = 0.5 * (_cos_rows(va[i][ra], vb[j][rb]) + _cos_rows(oa[i][ra], ob[j][rb]))
        terms.append(f)
        layers.append((i, j, stable(float(f.mean()))))
    return [GroupResult("value units", sign_test(np.concatenate(terms)), tuple(layers))]
