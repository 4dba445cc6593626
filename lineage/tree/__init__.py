"""The model tree recovered from weights alone (`lineage tree`): which models descend from which, in which
direction, by which relation, with a p-value per edge.

Modules, in the order they run: `candidates` (nearest neighbours by compact vector), `edges` (weight tests
in Kruskal's order, Benjamini-Hochberg, the spanning forest), `merges` (models two or more relatives explain
together), `evidence` (the facts of a pair of fingerprints), `direction` (votes and the root of each tree),
`relation` (the hub's words and lineage's), `build` (all of it), `licence` (inherited licences, declared vs
recovered), `score` (a tree against a manifest's `parents`).
"""

from lineage.tree.build import DEFAULT_TREE_ALPHA, ModelTree, TreeEdge, TreeOptions, build_tree

__all__ = ["DEFAULT_TREE_ALPHA", "ModelTree", "TreeEdge", "TreeOptions", "build_tree"]
