"""A rounded copy stored in its original's dtype is told from the original by its quantisation grid."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lineage.fingerprint import Fingerprint
from tests.tree.synthetic import base, child


def _rounded(fp: Fingerprint, name: str, scale: float) -> Fingerprint:
    """A copy of `fp` whose raw responses are `scale` times as large, every decoder matrix on an 8-bit grid.
    Below 1, the copy is the smaller: what growth alone reads as the original."""
    responses = {k: (scale * v).astype(np.float32) for k, v in fp.responses.items()}
    return replace(fp, name=name, responses=responses, quant_grid={k: 8 for k in fp.responses})


def _mix(name: str, a: Fingerprint, b: Fingerprint) -> Fingerprint:
    """A linear merge, half of each (sketches, raw and identity responses)."""
    avg = lambda x, y: {k: ((x[k].astype(np.float32) + y[k].astype(np.float32)) / 2) for k in x}  # noqa: E731
    return replace(a, name=name, sketches=avg(a.sketches, b.sketches), responses=avg(a.responses, b.responses),
                   identity={k: v.astype(np.float16) for k, v in avg(a.identity, b.identity).items()})  # fmt: skip


def test_the_model_on_the_grid_is_the_copy_even_when_growth_says_otherwise() -> None:
    from lineage.tree import build_tree

    orig = base("orig", np.random.default_rng(3))
    tree = build_tree([orig, _rounded(orig, "copy", 0.995)])
    (edge,) = tree.edges
    assert (edge.parent, edge.child, edge.relation, edge.direction) == ("orig", "copy", "quantized", "directed")
    assert any("8-bit grid" in why for why in edge.direction_evidence)


def test_a_merge_names_the_original_not_its_rounded_copy() -> None:
    from lineage.tree import build_tree

    rng = np.random.default_rng(4)
    orig = base("orig", rng)
    ft = child("ft", orig, rng)
    other = child("other", orig, rng)
    fps = [_rounded(orig, "copy", 0.995), orig, ft, other, _mix("merge", orig, ft)]
    tree = build_tree(fps)
    assert sorted(e.parent for e in tree.parents_of("merge")) == ["ft", "orig"]
    assert [(e.parent, e.relation) for e in tree.parents_of("copy")] == [("orig", "quantized")]


def test_a_trained_child_of_a_rounded_model_is_not_read_as_its_parent() -> None:
    from lineage.tree import build_tree
    from lineage.tree.evidence import pair_facts, rounded_side

    rng = np.random.default_rng(5)
    rounded = replace(base("rounded", rng), quant_grid={f"layers.{i}.{k}": 4 for i in range(2) for k in ("q", "up")})
    tuned = replace(child("tuned", rounded, rng), quant_grid={})  # training leaves the grid
    facts = pair_facts(rounded, tuned, 0.1, 0.3)  # far more apart than a round trip to 4 bits moves weights
    assert rounded_side(facts) == 0
    assert [(e.parent, e.child) for e in build_tree([rounded, tuned]).edges] == [("rounded", "tuned")]


def test_a_small_change_on_no_grid_is_read_as_pruning() -> None:
    """Two models of one embedding, a small change of every projection, `b` the smaller: with neither on a
    quantisation grid the change is no rounding, so `b` lost weight (pruned, the child); with `a` on a grid the
    change is `a`'s rounding noise and the larger, `a`, is the child."""
    from lineage.tree.direction import edge_votes
    from lineage.tree.evidence import PairFacts

    rng = np.random.default_rng(6)
    a, b = base("a", rng), base("b", rng)

    def votes(grids: tuple) -> list:
        facts = PairFacts((2, 2), (64, 64), (100, 100), (("F32",), ("F32",)), 0.0003, 0.11, True,
                          dict.fromkeys(("q", "up"), 0.11), 0.0, -0.8, False, grids)  # fmt: skip
        return [(s, why) for w, s, why in edge_votes(a, b, facts) if w > 0]

    assert votes((None, None)) == [(1, "a small change on no quantisation grid: pruned, the smaller is the child")]
    assert {s for s, _ in votes((4, None))} == {-1}
