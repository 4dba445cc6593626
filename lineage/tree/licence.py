"""Inherited licences and declared lineage, read off a recovered tree.

A derivative carries its base's licence terms ("derived from X, so X's licence applies"): each model's
inherited licence is its root's, every root's for a merge of several trees. A model whose declared licence
(its model card's `license`, else its manifest row's `license` column) differs from one it inherits is
flagged. The declared `base_model` is checked the way `lineage verify` checks it: a declared model agrees
when the weights put the model in its lineage (the same tree root), and the tree adds whether it is the
recovered parent itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lineage.tree.build import ModelTree

AGREES_PARENT, AGREES_LINEAGE, CONTRADICTED, UNVERIFIABLE = "parent", "lineage", "contradicted", "unverifiable"


@dataclass(frozen=True)
class NodeCheck:
    """What the tree says of one model's declarations.

    Attributes:
        roots: the roots it descends from (itself when it has no parent).
        inherited_licences: the roots' licences (None where a root's is unknown), sorted.
        licence: its own declared licence, None when unknown.
        licence_conflict: its licence differs from one it inherits (None: nothing to compare).
        declared: the declared base models, as resolved to models of the tree (None where one names none).
        declared_check: "parent" (a declared model is its recovered parent), "lineage" (one is in its tree),
            "contradicted", "unverifiable" (no declared model is in the tree), None when nothing is declared.
    """

    roots: tuple[str, ...]
    inherited_licences: tuple[str | None, ...]
    licence: str | None
    licence_conflict: bool | None
    declared: tuple[str | None, ...]
    declared_check: str | None

    def to_dict(self) -> dict:
        return {
            "roots": list(self.roots), "inherited_license": [x for x in self.inherited_licences if x] or None,
            "license": self.licence, "license_conflict": self.licence_conflict,
            "declared_base_model": list(self.declared), "declared_check": self.declared_check,
        }  # fmt: skip


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def check_node(
    tree: ModelTree, name: str, licences: Mapping[str, str | None], declared: Sequence[str | None]
) -> NodeCheck:
    """Check one model of the tree.

    Args:
        tree: the recovered tree.
        name: the model.
        licences: model name -> its declared licence (None: unknown).
        declared: its declared base models resolved to tree names (None for one naming no model of the tree).
    """
    roots = tuple(tree.roots_of(name))
    own = licences.get(name)
    inherited = tuple(sorted({licences.get(r) for r in roots if r != name}, key=lambda x: (x is None, x or "")))
    known = [x for x in inherited if x]
    conflict = None if own is None or not known else any(not _same(own, x) for x in known)
    check = None
    if declared:
        parents = {e.parent for e in tree.parents_of(name)}
        lineage = set(roots)
        resolved = [d for d in declared if d is not None]
        if any(d in parents for d in resolved):
            check = AGREES_PARENT
        elif any(lineage & set(tree.roots_of(d)) for d in resolved):
            check = AGREES_LINEAGE
        elif resolved:
            check = CONTRADICTED
        else:
            check = UNVERIFIABLE
    return NodeCheck(roots, inherited, own, conflict, tuple(declared), check)
