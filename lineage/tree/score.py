"""A recovered tree against the truth a manifest states (its `parents` and `derivation` columns).

Edges are scored as pairs (recall and precision: which models the tree joins); direction on the recovered
true edges (right when the edge points from the true parent and is directed: an undirected edge counts as
wrong); relation on the recovered true edges whose derivation the table below maps to a relation.
"""

from __future__ import annotations

from collections.abc import Sequence

from lineage.refs.manifest import ManifestRow
from lineage.tree.build import DIRECTED, ModelTree

#: The catalog's derivations (`catalog/recipe.toml`) in the tree's relations: the hub's four words where they
#: apply (a cast is stored in fewer bits, as quantisation; abliteration and instruction tuning change weights
#: throughout, as fine-tuning), lineage's for the rest.
DERIVATION_RELATIONS: dict[str, str] = {
    "finetune": "finetune", "instruct": "finetune", "continued_pretrain": "finetune", "abliteration": "finetune",
    "finetune_of_independent": "finetune", "lora": "adapter",
    "quant_int8": "quantized", "quant_int4": "quantized", "cast_bf16": "quantized", "cast_fp16": "quantized",
    "prune_magnitude": "pruned", "layer_removal": "pruned", "depth_prune": "pruned", "depth_upscale": "upscaled",
    "vocab_extend": "vocabulary-edited", "vocab_permute": "vocabulary-edited", "vocab_trim": "vocabulary-edited",
}  # fmt: skip


def expected_relation(derivation: str | None) -> str | None:
    """The relation a derivation should get (None: not scored)."""
    if derivation is None:
        return None
    if derivation.startswith("merge_"):
        return "merge"
    if derivation.startswith("disguise_"):
        return "disguised"
    return DERIVATION_RELATIONS.get(derivation)


def _ratio(num: int, den: int) -> dict:
    return {"correct": num, "total": den, "rate": num / den if den else None}


def score_tree(tree: ModelTree, rows: Sequence[ManifestRow]) -> dict:
    """Edge recall and precision, direction and relation accuracy, and every miss, as one JSON-ready dict.

    Args:
        tree: the recovered tree.
        rows: the manifest's rows (their `parents` and `derivation`), the models of the tree among them.
    """
    known = set(tree.names)
    by_name = {r.name: r for r in rows}
    truth = {(p, r.name) for r in rows if r.name in known for p in r.parents if p in known}
    pairs = {frozenset(t) for t in truth}
    found = {frozenset((e.parent, e.child)): e for e in tree.edges}
    hits = [found[p] for p in pairs if p in found]
    direction_ok = [e for e in hits if e.direction == DIRECTED and (e.parent, e.child) in truth]
    scored = [(e, expected_relation(by_name[_child(e, truth)].derivation)) for e in hits]
    scored = [(e, want) for e, want in scored if want is not None]
    relation_ok = [e for e, want in scored if e.relation == want]
    missed = sorted(f"{p} -> {c} ({by_name[c].derivation})" for p, c in truth if frozenset((p, c)) not in found)
    extra = sorted(f"{e.parent} -> {e.child} ({e.relation})" for k, e in found.items() if k not in pairs)
    wrong_direction = sorted(f"{e.parent} -> {e.child} ({e.direction}, {by_name[_child(e, truth)].derivation})"
                             for e in hits if e not in direction_ok)  # fmt: skip
    wrong_relation = sorted(f"{e.parent} -> {e.child}: {e.relation}, expected {want}"
                            for e, want in scored if e.relation != want)  # fmt: skip
    return {
        "edges": {"true": len(truth), "recovered": len(found), "right": len(hits),
                  "recall": len(hits) / len(truth) if truth else None,
                  "precision": len(hits) / len(found) if found else None},
        "direction": _ratio(len(direction_ok), len(hits)),
        "relation": _ratio(len(relation_ok), len(scored)),
        "missed": missed, "extra": extra, "wrong_direction": wrong_direction, "wrong_relation": wrong_relation,
    }  # fmt: skip


def _child(edge: object, truth: set[tuple[str, str]]) -> str:
    """The true child of a recovered true edge, whichever way it was drawn."""
    return edge.child if (edge.parent, edge.child) in truth else edge.parent  # type: ignore[attr-defined]


def score_text(score: dict) -> str:
    """The scores as `lineage evaluate tree` prints them."""
    e, d, r = score["edges"], score["direction"], score["relation"]
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    lines = [
        f"edges: recall {e['right']}/{e['true']} = {pct(e['recall'])}, precision {e['right']}/{e['recovered']} = "
        f"{pct(e['precision'])}",
        f"direction (recovered true edges): {d['correct']}/{d['total']} = {pct(d['rate'])}",
        f"relation (recovered true edges): {r['correct']}/{r['total']} = {pct(r['rate'])}",
    ]
    for key, title in (("missed", "missed"), ("extra", "extra"), ("wrong_direction", "wrong direction"),
                       ("wrong_relation", "wrong relation")):  # fmt: skip
        lines += [f"{title}: {x}" for x in score[key]]
    return "\n".join(lines)
