"""The weight test: do two models share their weights' arbitrary basis, the mark of one lineage?

Two models trained independently on the same data with the same tokenizer learn similar *functions*: on
the catalog's same-shape twins the embedding-anchored circuit sketches correlate at 0.5-0.85, as high as a
heavy continued pretraining of one of them. What they never share is the arbitrary part of their weights,
the coordinates that the random initialisation fixed and training only nudged. A derivative keeps them
(fine-tuning, LoRA, merging, quantisation and pruning move weights, they do not redraw them).

Every fingerprint stores, per weight matrix, its responses to 12 fixed Gaussian probes projected on a
fixed random basis (`X W^T Psi`, seeded by tensor kind and shape, so two models of one shape share `X` and
`Psi`). The cosine of two such response blocks estimates the cosine of the two weight matrices. For
independent weights it is centred on 0 (the coordinates of one model mean nothing in the other's), for a
derivative it is the share of the weights it kept (0.99 for a fine-tune, 0.86 for the catalog's continued
pretraining, 1 for an untouched tensor).

The test is a one-sample t-test of the matched tensors' cosines against a mean of 0, one-sided: it needs
no constant fitted to any catalog, its null is the symmetry of cosines between unrelated coordinates, and
it is self-normalised by the spread the pair itself shows. It is run on three groups of tensors: all of
them, the attention projections, the feed-forward projections, because a function-preserving disguise
may redraw the basis of one block only (MergeLock: attention; a neuron permutation: the feed-forward block);
the smallest p-value is corrected for the number of groups tested (Bonferroni). Layers are matched by index
when the depths agree; otherwise the order-preserving matching of best mean cosine is used, and the p-value
is corrected for the number of such matchings, so removing layers costs power, never honesty.

A residual-stream rotation redraws every input basis at once. The matrices that read the residual stream
(queries, keys, values, gate and up projections) are therefore also compared through their *anchored*
responses: the model's own normalised token embeddings through the matrix, projected on the same fixed
basis (`Fingerprint.anchored`), compared over the anchor tokens both models share. A rotation moves the
embeddings and the readers alike and cancels there, while the readers' output basis (heads, neurons), which
an independent model does not share, stays. So the groups tested are six: raw and anchored, each over all
tensors, attention and feed-forward. Only a disguise that redraws every basis of every block (rotation,
and per-head maps, and a neuron permutation together) leaves the weight test blind; the function test
(the sketches' correlation against the null of independent same-tokenizer models) remains.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from lineage.compare.similarity import shared_positions
from lineage.fingerprint.format import Fingerprint

ANCHORED = "anchored:"  # key prefix of anchored responses among a layer's cosines
MIN_SHARED_ANCHORS = 8
MIN_TENSORS = 3  # fewer matched tensors in a group give no usable spread
#: Tensor kinds (role keys of `lineage.arch`) of the two blocks a disguise can redraw separately.
GROUPS: dict[str, frozenset[str]] = {
    "attention": frozenset({"q", "k", "v", "o", "qkv", "qkv_interleaved"}),
    "ffn": frozenset({"gate", "up", "down", "gate_up"}),
}


@dataclass(frozen=True)
class WeightTest:
    """The weight test of one pair.

    Attributes:
        p_value: one-sided p-value (Bonferroni over groups and layer matchings), 1.0 when nothing matched.
        group: the tensor group that gave the smallest p-value (`all`, `attention`, `ffn`, each raw or
            `anchored ...`), None when nothing matched.
        mean_cosine: mean cosine of that group's matched tensors.
        layers: per matched layer pair `(layer_a, layer_b, mean cosine over its matched tensors)`.
        matched: number of tensors compared.
    """

    p_value: float
    group: str | None
    mean_cosine: float
    layers: tuple[tuple[int, int, float], ...]
    matched: int

    def to_dict(self) -> dict:
        return {
            "p_value": self.p_value,
            "group": self.group,
            "mean_cosine": self.mean_cosine,
            "matched_tensors": self.matched,
            "layers": [{"layer": a, "reference_layer": b, "cosine": c} for a, b, c in self.layers],
        }


NO_MATCH = WeightTest(1.0, None, 0.0, (), 0)


def _by_layer(fp: Fingerprint) -> dict[int, dict[str, np.ndarray]]:
    """`{layer: {kind: flat float64 responses}}` from the `layers.N.kind` response keys."""
    out: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
    for key, arr in fp.responses.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
            out[int(parts[1])][parts[2]] = np.asarray(arr, dtype=np.float64).ravel()
    return dict(out)


def _cosines(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for kind in a.keys() & b.keys():
        x, y = a[kind], b[kind]
        if x.shape != y.shape:
            continue
        nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
        if nx > 0 and ny > 0:
            out[kind] = float(x @ y) / (nx * ny)
    return out


def _anchored(fp: Fingerprint, keep: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    """`{layer: {kind: flat anchored responses at anchor positions keep}}`."""
    out: dict[int, dict[str, np.ndarray]] = defaultdict(dict)
    for key, arr in fp.anchored.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
            out[int(parts[1])][parts[2]] = np.asarray(arr, dtype=np.float64)[keep].ravel()
    return dict(out)


def _matching(scores: np.ndarray) -> list[tuple[int, int]]:
    """Order-preserving one-to-one matching of rows to columns with the largest total score."""
    la, lb = scores.shape
    best = np.full((la + 1, lb + 1), -np.inf)
    best[0, :] = 0.0
    best[:, 0] = 0.0
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            best[i, j] = max(best[i - 1, j], best[i, j - 1], best[i - 1, j - 1] + scores[i - 1, j - 1])
    pairs, i, j = [], la, lb
    while i > 0 and j > 0:
        if best[i, j] == best[i - 1, j - 1] + scores[i - 1, j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif best[i, j] == best[i - 1, j]:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _one_sided_t(values: np.ndarray) -> float:
    """p-value of a one-sample t-test of mean > 0."""
    n = len(values)
    sd = float(values.std(ddof=1))
    mean = float(values.mean())
    if sd == 0.0:
        return 0.0 if mean > 0 else 1.0
    return float(student_t.sf(mean / (sd / math.sqrt(n)), df=n - 1))


def weight_test(a: Fingerprint, b: Fingerprint) -> WeightTest:
    """The weight test of `a` (suspect) against `b` (reference); rule in the module docstring.

    Args:
        a, b: fingerprints with raw responses (fingerprints made by lineage; feature files have none).

    Returns:
        The test's result; `NO_MATCH` when no tensor of one shape is shared.
    """
    if a.summary is not None and b.summary is not None and a.summary.hidden_size != b.summary.hidden_size:
        return NO_MATCH  # probes are seeded by shape: other widths were probed with other probes
    la, lb = _by_layer(a), _by_layer(b)
    if not la or not lb:
        return NO_MATCH
    if a.anchored and b.anchored and a.anchors is not None and b.anchors is not None:
        keep_a, keep_b = shared_positions(a, b)
        if len(keep_a) >= MIN_SHARED_ANCHORS:
            for raw, anchored in ((la, _anchored(a, keep_a)), (lb, _anchored(b, keep_b))):
                for layer, kinds in anchored.items():
                    raw.setdefault(layer, {}).update({ANCHORED + k: v for k, v in kinds.items()})
    ia, ib = sorted(la), sorted(lb)
    cos = [[_cosines(la[i], lb[j]) for j in ib] for i in ia]
    if len(ia) == len(ib):
        pairs, matchings = [(k, k) for k in range(len(ia))], 1.0
    else:
        scores = np.array([[np.mean(list(c.values())) if c else 0.0 for c in row] for row in cos])
        flip = len(ia) > len(ib)
        pairs = _matching(scores.T if flip else scores)
        pairs = [(q, p) for p, q in pairs] if flip else pairs
        matchings = float(math.comb(max(len(ia), len(ib)), min(len(ia), len(ib))))
    per_kind: dict[str, list[float]] = defaultdict(list)
    layers = []
    for p, q in pairs:
        c = cos[p][q]
        for kind, v in c.items():
            per_kind[kind].append(v)
        if c:
            layers.append((ia[p], ib[q], float(np.mean(list(c.values())))))
    groups: dict[str, list[float]] = {}
    for prefix, label in (("", ""), (ANCHORED, "anchored ")):
        mine = {k[len(prefix) :]: vs for k, vs in per_kind.items() if k.startswith(ANCHORED) == bool(prefix)}
        groups[f"{label}all"] = [v for vs in mine.values() for v in vs]
        for name, kinds in GROUPS.items():
            groups[f"{label}{name}"] = [v for k, vs in mine.items() if k in kinds for v in vs]
    tested = {g: np.array(v) for g, v in groups.items() if len(v) >= MIN_TENSORS}
    if not tested:
        return NO_MATCH
    p_by_group = {g: _one_sided_t(v) for g, v in tested.items()}
    group = min(sorted(p_by_group), key=p_by_group.get)
    p = min(1.0, p_by_group[group] * len(tested) * matchings)
    matched = len(groups["all"]) + len(groups["anchored all"])
    return WeightTest(p, group, float(tested[group].mean()), tuple(layers), matched)
