"""Unrelated models stay a forest; related ones join; the pieces of the tree stage hold their rules."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tree.synthetic import base, forest


def test_unrelated_bases_stay_a_forest() -> None:
    from lineage.tree import build_tree

    rng = np.random.default_rng(1)
    bases = [base(f"b{i}", rng) for i in range(24)]
    tree = build_tree(bases)
    assert tree.edges == ()
    assert tree.tested >= 24  # every model was tested against a neighbour: no edge passed at 0.1%
    assert sorted(tree.roots) == sorted(fp.name for fp in bases)


def test_synthetic_families_are_joined_within_and_never_across() -> None:
    from lineage.tree import build_tree

    fps = forest(families=6, size=5, seed=2)
    tree = build_tree(fps)
    assert all(e.parent.split("-")[0] == e.child.split("-")[0] for e in tree.edges)
    assert len(tree.edges) == 6 * 4  # each family one tree
    assert tree.tested < len(fps) * (len(fps) - 1) // 2


def test_candidates_are_nearest_neighbours() -> None:
    from lineage.tree.candidates import candidate_pairs

    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert candidate_pairs(x, neighbours=1) == [(0, 1), (2, 3)]
    assert candidate_pairs(x, neighbours=3) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    with pytest.raises(ValueError):
        candidate_pairs(x, neighbours=0)


def test_orient_roots_where_the_votes_agree() -> None:
    from lineage.tree.direction import orient

    # A chain 0 - 1 - 2: the edge (1, 2) says 2 is 1's child; nothing on (0, 1).
    root, out = orient([0, 1, 2], [(0, 1), (1, 2)], {(1, 2): [(1.0, 1, "")]})
    assert out[(1, 2)][:2] == (1, 2) and out[(1, 2)][2] > 0
    assert out[(0, 1)][2] == 0  # undecided: 0 or 1 may be the root
    root, out = orient([0, 1, 2], [(0, 1), (1, 2)], {(0, 1): [(1.0, -1, "")], (1, 2): [(1.0, 1, "")]})
    assert root == 1 and out[(0, 1)][:2] == (1, 0) and out[(1, 2)][:2] == (1, 2)


def test_tree_options_are_checked() -> None:
    from lineage.tree import TreeOptions
    from lineage.tree.merges import MergeOptions

    for bad in ({"alpha": 0.0}, {"neighbours": 0}, {"raw_weight": -1.0}):
        with pytest.raises(ValueError):
            TreeOptions(**bad)
    for bad in ({"max_parents": 1}, {"min_weight": 0.6}, {"max_unexplained": 0.0}):
        with pytest.raises(ValueError):
            MergeOptions(**bad)
