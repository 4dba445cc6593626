"""Inherited licences and declared base models, read off a tree: each model inherits its root's licence
(every root's for a merge), and a declared licence that differs is flagged."""

from __future__ import annotations

from lineage.tree.build import ModelTree, TreeEdge


def _edge(parent: str, child: str, relation: str = "finetune") -> TreeEdge:
    return TreeEdge(parent, child, -50.0, "ffn", 0.1, 0.2, relation, "", "directed", 0.9, ())


TREE = ModelTree(
    names=("llama", "qwen", "ft", "ft-int4", "merge", "lone"),
    edges=(_edge("llama", "ft"), _edge("ft", "ft-int4", "quantized"), _edge("ft", "merge", "merge"),
           _edge("qwen", "merge", "merge")),  # fmt: skip
    tested=5, candidates=9, significant=4, alpha=0.001,
)  # fmt: skip


def test_licences_are_inherited_from_the_roots() -> None:
    from lineage.tree.licence import check_node

    licences = {"llama": "llama3.2", "qwen": "apache-2.0", "ft": "Apache-2.0", "ft-int4": "LLAMA3.2", "merge": None}
    ft = check_node(TREE, "ft", licences, ())
    assert ft.roots == ("llama",) and ft.inherited_licences == ("llama3.2",) and ft.licence_conflict is True
    q = check_node(TREE, "ft-int4", licences, ())
    assert q.licence_conflict is False  # case does not matter
    m = check_node(TREE, "merge", licences, ())
    assert m.roots == ("llama", "qwen") and m.inherited_licences == ("apache-2.0", "llama3.2")
    assert m.licence_conflict is None  # nothing declared
    assert check_node(TREE, "merge", {**licences, "merge": "apache-2.0"}, ()).licence_conflict is True
    root = check_node(TREE, "llama", licences, ())
    assert root.inherited_licences == () and root.licence_conflict is None


def test_declared_base_models_against_the_tree() -> None:
    from lineage.tree.licence import check_node

    assert check_node(TREE, "ft-int4", {}, ("ft",)).declared_check == "parent"
    assert check_node(TREE, "ft-int4", {}, ("llama",)).declared_check == "lineage"
    assert check_node(TREE, "ft-int4", {}, ("qwen",)).declared_check == "contradicted"
    assert check_node(TREE, "ft-int4", {}, (None,)).declared_check == "unverifiable"
    assert check_node(TREE, "ft-int4", {}, ()).declared_check is None
