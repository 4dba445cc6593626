"""The relation of a child to its parent, in the hub's words (`base_model_relation`: finetune, adapter,
merge, quantized) and lineage's (pruned, upscaled, vocabulary-edited, disguised), from `PairFacts`.

The order of the rules is the order of certainty: a merge is what `lineage.tree.merges` found; a change of
depth, width, vocabulary or stored dtype is read from the headers; a disguise computes its parent's very
function (sketch distance about 0) in other weights. Among copies of one shape the tensors that changed
tell the rest: quantisation, magnitude pruning and merged LoRA adapters leave the embedding as it was
(tools quantise and adapt the decoder's projections only), and of those pruning removes weight (the child
is the smaller, `growth` below 0 read from parent to child) where rounding adds noise; LoRA changes every
projection by a low-rank update much larger, relative to the rounding noise of 4 or 8 bits, than a
quantiser's (`ADAPTER_CHANGE`). A child whose values lie on a quantisation grid its parent's do not, within
what a round trip to that grid moves weights (`lineage.tree.evidence.rounded_side`), is quantized whatever
dtype it is stored in. Anything else is a fine-tune. A change of stored dtype is a quantisation only
when the weights are otherwise the same (a cast): bases are often stored in bfloat16, their fine-tunes in
float32.
"""

from __future__ import annotations

from lineage.tree.evidence import CAST, UNCHANGED, PairFacts, rounded_side

HUB_RELATIONS: tuple[str, ...] = ("finetune", "adapter", "merge", "quantized")
LINEAGE_RELATIONS: tuple[str, ...] = ("pruned", "upscaled", "vocabulary-edited", "disguised")
RELATIONS: tuple[str, ...] = HUB_RELATIONS + LINEAGE_RELATIONS

#: Sketch distance under which two models compute the same function (a disguise; float16 noise is ~1e-4).
SAME_FUNCTION = 0.003
#: Raw response distance over which two models of one function are in other weight bases (a disguise).
OTHER_BASIS = 0.3
#: Mean relative change of the projections above which an embedding-preserving copy is an adapter, not a
#: quantisation or pruning (chosen on the catalog's seed 0: LoRA 0.8-0.9, int4 and 30% pruning 0.1-0.12).
ADAPTER_CHANGE = 0.4
#: `growth` (parent to child) under which a copy lost weight: pruning.
SHRANK = -0.5

_PRECISION = {"F64": 64, "F32": 32, "BF16": 16, "F16": 16, "F8_E4M3": 8, "F8_E5M2": 8}


def precision(dtypes: tuple[str, ...]) -> int | None:
    """The widest float width among stored dtypes (None when none is a known float)."""
    bits = [_PRECISION[d] for d in dtypes if d in _PRECISION]
    return max(bits) if bits else None


def same_shape_rounded(facts: PairFacts) -> bool:
    """Whether the child `b` is a copy of its parent `a` rounded to a quantisation grid (same shapes)."""
    return facts.layers[0] == facts.layers[1] and facts.hidden[0] == facts.hidden[1] and rounded_side(facts) == 1


def relation(facts: PairFacts, merged: bool = False) -> tuple[str, str]:
    """`(relation, why)` of the child `b` to its parent `a` (facts read from parent to child)."""
    if merged:
        return "merge", "explained by two or more relatives together (non-negative least squares)"
    (lp, lc), (hp, hc), (vp, vc) = facts.layers, facts.hidden, facts.vocab
    if lp is not None and lc is not None and lc < lp:
        return "pruned", f"{lp} -> {lc} layers"
    if lp is not None and lc is not None and lc > lp:
        return "upscaled", f"{lp} -> {lc} layers"
    if hp is not None and hc is not None and hc < hp:
        return "pruned", f"width {hp} -> {hc}"
    if vp is not None and vc is not None and vc != vp:
        return "vocabulary-edited", f"vocabulary {vp} -> {vc} tokens"
    if facts.anchors_moved:
        return "vocabulary-edited", "the same tokens at other ids"
    bp, bc = precision(facts.dtypes[0]), precision(facts.dtypes[1])
    if bp is not None and bc is not None and bc < bp and facts.raw is not None and facts.raw < CAST:
        return "quantized", f"the same weights stored in {bc} bits, the parent's in {bp}"
    if same_shape_rounded(facts):
        return "quantized", f"the same weights rounded to a {facts.grids[1]}-bit grid (raw distance {facts.raw:.4f})"
    if facts.distance < SAME_FUNCTION and (not facts.same_basis or (facts.raw or 0.0) > OTHER_BASIS):
        return "disguised", f"the same function (sketch distance {facts.distance:.4f}) in other weights"
    if facts.same_basis and facts.embed_changed is not None and facts.embed_changed < UNCHANGED:
        changed = [k for k, v in facts.changed.items() if v >= UNCHANGED]
        mean = sum(facts.changed.values()) / max(1, len(facts.changed))
        if changed and set(changed) <= {"o", "down"}:
            return "finetune", "only the residual writers (o, down) and perhaps the embedding changed: an edit"
        if mean >= ADAPTER_CHANGE:
            return "adapter", f"embedding kept, every projection changed by {mean:.3f} (a merged adapter)"
        if facts.growth is not None and facts.growth < SHRANK:
            return "pruned", f"embedding kept, weight removed (growth {facts.growth:.2f})"
        return "quantized", f"embedding kept, every projection moved by {mean:.3f} (rounding noise)"
    return "finetune", "weights of the same shapes changed throughout"
