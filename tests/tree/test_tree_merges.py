"""Merges from raw responses: exact and sparsified (TIES/DARE) merges are found with their parents; a base,
a chain, a model with children and near-exact copies are not merges; a copy hangs from its original."""

from __future__ import annotations

import numpy as np
import pytest

from lineage.fingerprint import Fingerprint
from lineage.fingerprint.format import TENSORGUARD_FEATURES, ModelSummary
from lineage.tree.edges import PairTest, copy_originals, raw_distance
from lineage.tree.merges import MergeOptions, find_merges

KEYS = [f"layers.{i}.{k}" for i in range(6) for k in ("q", "o", "up", "down")]


def _fp(name: str, flat: np.ndarray, dtype: str = "F32") -> Fingerprint:
    parts = np.split(flat.astype(np.float32), len(KEYS))
    summary = ModelSummary("LlamaForCausalLM", 6, 64, 100, 10_000, (dtype,), "0" * 64, 1)
    features = dict.fromkeys(TENSORGUARD_FEATURES, 1.0)
    return Fingerprint(name, features, summary=summary, responses={k: p.reshape(12, 8) for k, p in zip(KEYS, parts)})


def _family(seed: int = 0) -> dict[str, np.ndarray]:
    """A base, three independent fine-tunes of it, and a DARE merge of the first two (density 0.5, 0.5 each)."""
    rng = np.random.default_rng(seed)
    size = len(KEYS) * 96
    base = rng.normal(size=size)
    out = {"base": base}
    for k in range(3):
        out[f"ft{k}"] = base + 0.3 * rng.normal(size=size)
    keep = [rng.random(size) < 0.5 for _ in range(2)]
    out["dare"] = base + sum(0.5 * m * (out[f"ft{k}"] - base) / 0.5 for k, m in enumerate(keep))
    return out


def _merges(vectors: dict[str, np.ndarray], dtypes: dict[str, str] | None = None) -> dict[str, list[str]]:
    fps = [_fp(n, v, (dtypes or {}).get(n, "F32")) for n, v in vectors.items()]
    fits = find_merges(fps, list(range(len(fps))), MergeOptions())
    return {fps[f.child].name: sorted(fps[i].name for i, _ in f.parents) for f in fits}


def test_a_dare_merge_is_found_with_its_parents_and_base() -> None:
    vectors = _family()
    fps = [_fp(n, v) for n, v in vectors.items()]
    fits = find_merges(fps, list(range(len(fps))), MergeOptions())
    assert [(fps[f.child].name, sorted(fps[i].name for i, _ in f.parents)) for f in fits] == [("dare", ["ft0", "ft1"])]
    (fit,) = fits
    assert fps[fit.base].name == "base" and fit.kind == "sparsified"
    assert all(abs(w - 0.5) < 0.1 for _, w in fit.parents)
    assert 0.3 < fit.ratio < 0.6  # the dropped half of each change is as large as the kept half


def test_an_exact_merge_is_found_by_the_exact_rule() -> None:
    vectors = _family()
    vectors["linear"] = 0.7 * vectors["ft1"] + 0.3 * vectors["ft2"]
    fps = [_fp(n, v) for n, v in vectors.items()]
    fits = {fps[f.child].name: f for f in find_merges(fps, list(range(len(fps))), MergeOptions())}
    assert fits["linear"].kind == "exact" and fits["linear"].ratio < 0.01
    assert sorted((fps[i].name, round(w, 2)) for i, w in fits["linear"].parents) == [("ft1", 0.7), ("ft2", 0.3)]


@pytest.mark.parametrize("seed", range(4))
def test_chains_children_and_bases_are_not_merges(seed: int) -> None:
    """A model between its parent and its child, a model with two children, and a base of three fine-tunes:
    each lies near the average of relatives, and none is a merge."""
    rng = np.random.default_rng(100 + seed)
    size = len(KEYS) * 96
    step = lambda x: x + 0.3 * rng.normal(size=size)  # noqa: E731 - one fine-tune
    base = rng.normal(size=size)
    mid = step(base)
    vectors = {"base": base, "other": step(base), "mid": mid, "grandchild": step(mid), "leaf": step(step(mid))}
    vectors |= {"child-a": step(mid), "child-b": step(mid), "third": step(base)}
    assert _merges(vectors) == {}


def test_copies_count_as_one() -> None:
    """A merge's own float16 cast does not hide it (its nearest relative is no copy), and is no merge itself."""
    vectors = _family()
    vectors["linear"] = 0.7 * vectors["ft1"] + 0.3 * vectors["ft2"]
    vectors["linear-fp16"] = vectors["linear"].astype(np.float16).astype(np.float64)
    found = _merges(vectors, {"linear-fp16": "F16"})
    assert found == {"dare": ["ft0", "ft1"], "linear": ["ft1", "ft2"]}


def test_synthetic_trees_hold_no_merges() -> None:
    """Families of ten, each model a random earlier one plus a change of one size: chains, siblings and
    cousins in every arrangement, bases of many children; no merge among them."""
    from tests.tree.synthetic import forest

    found = []
    for seed in range(20, 40):
        fps = forest(families=10, size=10, seed=seed)
        for f in range(10):
            fits = find_merges(fps, list(range(10 * f, 10 * f + 10)), MergeOptions())
            found += [(seed, fps[fit.child].name) for fit in fits]
    assert found == []


def test_a_copy_hangs_from_its_original() -> None:
    """The cast (fewer bits) is the copy; with one dtype, the rounded copy (the larger) is."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=len(KEYS) * 96)
    rounded = np.round(x * 64) / 64  # a round trip through a grid adds noise orthogonal to the weights
    fps = [_fp("orig", x), _fp("cast", x, "F16"), _fp("rounded", rounded)]
    pairs = [PairTest(a, b, 0.0, raw_distance(fps[a], fps[b]), 0.0) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert all(p.raw is not None and p.raw < 0.02 for p in pairs)
    originals = copy_originals(fps, pairs)
    assert originals == {1: 0, 2: 0}


def test_a_merge_of_parents_that_grew_little_from_their_base_is_found() -> None:
    """Fine-tunes that shrink the weights as they train (weight decay) grow from their base by less than an
    orthogonal change would (the catalog's seed 2: Mistral's instruct model 0.51, its TIES merge 0.68): still
    their base's descendants (an ancestor of the base is smaller than it, growth about -1), so the merge of two
    of them is found."""
    from lineage.tree.merges import growth

    rng = np.random.default_rng(0)
    size = len(KEYS) * 96
    base = rng.normal(size=size)
    unit = base / float(base @ base)

    def tuned() -> np.ndarray:
        d = 0.3 * rng.normal(size=size)
        d -= float(d @ base) * unit
        return base + d - 0.25 * float(d @ d) * unit  # <base, change> = -0.25 |change|^2: growth 0.5

    vectors = {"base": base, "ft0": tuned(), "ft1": tuned(), "ft2": tuned()}
    keep = [rng.random(size) < 0.5 for _ in range(2)]
    vectors["dare"] = base + sum(m * (vectors[f"ft{k}"] - base) for k, m in enumerate(keep))
    assert all(0.4 < growth(base, vectors[n]) < 0.6 for n in ("ft0", "ft1", "dare"))
    fps = [_fp(n, v) for n, v in vectors.items()]
    found = lambda o: [(fps[f.child].name, sorted(fps[i].name for i, _ in f.parents))  # noqa: E731
                       for f in find_merges(fps, list(range(len(fps))), o)]  # fmt: skip
    assert found(MergeOptions()) == [("dare", ["ft0", "ft1"])]
    assert found(MergeOptions(min_parent_growth=0.6)) == [] and found(MergeOptions(min_growth=0.6)) == []
