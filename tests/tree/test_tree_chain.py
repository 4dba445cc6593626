"""The tree of a small known family is recovered exactly: edges, direction, relation, merge parents."""

from __future__ import annotations

from tests.tree.conftest import TRUE_EDGES


def test_chain_and_merge_recovered_exactly(family_fingerprints: list) -> None:
    from lineage.tree import build_tree

    tree = build_tree(family_fingerprints)
    got = {(e.parent, e.child): e.relation for e in tree.edges}
    assert got == TRUE_EDGES
    assert all(e.direction == "directed" for e in tree.edges), [(e.parent, e.child, e.direction) for e in tree.edges]
    assert all(e.log10_p < -3 for e in tree.edges)
    assert sorted(tree.roots) == ["base", "stranger"]
    assert tree.roots_of("merge") == ["base"]
    weights = {e.parent: e.merge_weight for e in tree.parents_of("merge")}
    assert abs(weights["instruct"] - 0.6) < 0.05 and abs(weights["coder"] - 0.4) < 0.05
