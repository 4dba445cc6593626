"""A sibling that shares part of another's change is hung from their base, a true grandchild is not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lineage.fingerprint import Fingerprint
from tests.tree.synthetic import base


def _noise(fp: Fingerprint, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """A random change of every array the tree reads (sketches, raw and identity responses)."""
    out = {part: {k: rng.normal(size=v.shape) for k, v in getattr(fp, part).items() if "frame" not in k}
           for part in ("sketches", "responses", "identity")}  # fmt: skip
    child = rng.spawn(1)[0]  # the weight frame's change: drawn apart, so every other draw is what it was
    out["identity"] |= {k: child.normal(size=v.shape) for k, v in sorted(fp.identity.items()) if "frame" in k}
    return out


def _moved(name: str, fp: Fingerprint, *changes: tuple[float, dict]) -> Fingerprint:
    """`fp` plus the sum of `scale * change` over `changes`."""
    out = {}
    for part in ("sketches", "responses", "identity"):
        arrays = {k: v.astype(np.float64) for k, v in getattr(fp, part).items()}
        for scale, change in changes:
            arrays = {k: v + scale * change[part][k] for k, v in arrays.items()}
        out[part] = {k: v.astype(np.float16 if part == "identity" else np.float32) for k, v in arrays.items()}
    return replace(fp, name=name, **out)


def test_a_sibling_carrying_part_of_a_change_hangs_from_the_base() -> None:
    from lineage.tree import build_tree
    from lineage.tree.chains import WHOLE_CHANGE

    rng = np.random.default_rng(7)
    b = base("base", rng)
    shared, own, other = _noise(b, rng), _noise(b, rng), _noise(b, rng)
    ft = _moved("ft", b, (0.2, shared))
    # Trained on like data: 0.7 of the fine-tune's change and a larger change of its own. Nearer the fine-tune
    # than the base, so the spanning forest alone hangs it from the fine-tune (as continued pre-training).
    cpt = _moved("cpt", b, (0.7 * 0.2, shared), (0.4, own))
    sib = _moved("sib", b, (0.2, other))
    tree = build_tree([b, ft, cpt, sib])
    assert sorted((e.parent, e.child) for e in tree.edges) == [("base", "cpt"), ("base", "ft"), ("base", "sib")]
    (edge,) = tree.parents_of("cpt")
    share = float(edge.relation_evidence.split("it carries ")[1].split()[0])
    assert "hung from base, not ft" in edge.relation_evidence and share < WHOLE_CHANGE


def test_a_grandchild_carrying_its_parents_whole_change_stays_in_the_chain() -> None:
    from lineage.tree import build_tree

    rng = np.random.default_rng(8)
    b = base("base", rng)
    first, second, other = _noise(b, rng), _noise(b, rng), _noise(b, rng)
    ft = _moved("ft", b, (0.3, first))
    grandchild = _moved("grandchild", b, (0.3, first), (0.2, second))
    sib = _moved("sib", b, (0.3, other))
    tree = build_tree([b, ft, grandchild, sib])
    assert sorted((e.parent, e.child) for e in tree.edges) == [("base", "ft"), ("base", "sib"), ("ft", "grandchild")]


def test_a_permuted_copy_nothing_was_built_from_is_the_child() -> None:
    from lineage.tree import build_tree
    from lineage.tree.direction import BUILT_ON, MIN_MARGIN, basis_votes

    rng = np.random.default_rng(9)
    b = base("base", rng)
    ft = _moved("ft", b, (0.2, _noise(b, rng)))
    # The same function in another basis: the raw responses' columns permuted (norms kept, so growth says
    # nothing), sketches, identity and statistics as they were: no fact of the edge itself tells the two apart.
    order = rng.permutation(8)
    permuted = replace(b, name="permuted", responses={k: v[:, order] for k, v in b.responses.items()})
    tree = build_tree([permuted, b, ft])
    assert sorted((e.parent, e.child, e.direction) for e in tree.edges) == [
        ("base", "ft", "directed"), ("base", "permuted", "directed")]
    assert BUILT_ON >= MIN_MARGIN
    assert basis_votes([(0, 1), (1, 2)], {(0, 1): 1.4, (1, 2): 0.2}, {(0, 1)}, 0.95)[(0, 1)][0][:2] == (BUILT_ON, -1)
    assert basis_votes([(0, 1)], {(0, 1): 1.4}, {(0, 1)}, 0.95) == {}  # neither side built on: undirected


def test_a_disguise_is_never_re_hung_whatever_share_its_change_carries() -> None:
    from lineage.tree.chains import WHOLE_CHANGE, carried, misplaced

    rng = np.random.default_rng(10)
    b = base("base", rng)
    ft = _moved("ft", b, (0.2, _noise(b, rng)))
    # Raw responses 0.3-0.95 apart from its parent's (a MergeLock copy's, under the distance of two bases)
    # and partly against the fine-tune's change, so the share is under WHOLE_CHANGE.
    back = {k: -0.3 * (ft.responses[k] - b.responses[k]) for k in ft.responses}
    odd = _noise(b, rng)["responses"]
    raw = {k: (ft.responses[k] + back[k] + 0.4 * odd[k]).astype(np.float32) for k in ft.responses}
    locked = replace(ft, name="locked", responses=raw)  # the fine-tune's function: its sketches as they were
    trained = replace(locked, name="trained", sketches=_moved("x", ft, (0.2, _noise(b, rng))).sketches)
    flat = lambda fp: np.concatenate([fp.responses[k].ravel() for k in sorted(fp.responses)])  # noqa: E731
    assert carried(flat(b), flat(ft), flat(locked)) < WHOLE_CHANGE
    oriented = {(0, 1): (0, 1, True), (1, 2): (1, 2, True)}
    assert misplaced([b, ft, locked], oriented) == []
    assert [c[1:] for c in misplaced([b, ft, trained], oriented)] == [(0, 1, 2)]  # the same numbers, trained


def test_gradient_kurtosis_directs_head_maps_not_a_neuron_permutation() -> None:
    from lineage.tree.direction import edge_votes
    from lineage.tree.evidence import PairFacts

    rng = np.random.default_rng(11)
    a = base("a", rng)
    b = replace(a, name="b", tensorguard={**a.tensorguard, "global_kurtosis": 7.5})
    a = replace(a, tensorguard={**a.tensorguard, "global_kurtosis": 7.2})  # 4% apart

    def votes(changed: set[str]) -> list:
        facts = PairFacts((3, 3), (64, 64), (100, 100), ((), ()), 0.0, 1.0, True,
                          {k: 0.5 for k in changed}, 0.0, 0.1, False)  # fmt: skip
        return edge_votes(a, b, facts)

    assert votes({"gate", "up", "down"}) == []
    assert [why for _, _, why in votes({"v", "o"})] == ["the disguised side's gradient kurtosis rose"]


def test_a_sibling_sharing_its_siblings_direction_is_told_by_the_joint_share() -> None:
    """Continued pre-training on the data every code fine-tune saw: it carries more than a whole fine-tune's
    change seen alone (the projection is over 1, as seed 2's `llama-8b-cpt`), but regressed on all the
    fine-tunes' changes it splits among them, where a child of one would need all of that one's."""
    from lineage.tree import build_tree
    from lineage.tree.chains import WHOLE_CHANGE, carried, misplaced

    rng = np.random.default_rng(12)
    b = base("base", rng)
    shared = _noise(b, rng)
    # A quarter of each fine-tune's change is the shared part (the catalog's fine-tunes share 0.2-0.4).
    fts = [_moved(f"ft{k}", b, (0.15, shared), (0.25, _noise(b, rng))) for k in range(3)]
    cpt = _moved("cpt", b, (0.6, shared), (0.5, _noise(b, rng)))
    flat = lambda fp: np.concatenate([fp.responses[k].ravel() for k in sorted(fp.responses)])  # noqa: E731
    g, x, y = flat(b), flat(fts[0]), flat(cpt)
    others = [flat(f) for f in fts[1:]]
    assert carried(g, x, y) > 1.0 > WHOLE_CHANGE > carried(g, x, y, others)
    # The forest hangs it from a fine-tune (nearer it than the base); the joint share re-hangs it.
    oriented = {(0, 1): (0, 1, True), (0, 2): (0, 2, True), (0, 3): (0, 3, True), (1, 4): (1, 4, True)}
    assert [c[1:] for c in misplaced([b, *fts, cpt], oriented)] == [(0, 1, 4)]
    tree = build_tree([b, *fts, cpt])
    assert sorted((e.parent, e.child) for e in tree.edges) == [("base", n) for n in ("cpt", "ft0", "ft1", "ft2")]


def test_a_grandchild_keeps_its_parent_when_its_parents_siblings_share_the_data() -> None:
    """The joint share of a true child stays about 1 however much its parent's siblings share with it."""
    from lineage.tree import build_tree
    from lineage.tree.chains import WHOLE_CHANGE, carried

    rng = np.random.default_rng(13)
    b = base("base", rng)
    shared = _noise(b, rng)
    fts = [_moved(f"ft{k}", b, (0.15, shared), (0.25, _noise(b, rng))) for k in range(3)]
    grandchild = _moved("grandchild", fts[0], (0.2, _noise(b, rng)))  # ft0's whole change and one of its own
    flat = lambda fp: np.concatenate([fp.responses[k].ravel() for k in sorted(fp.responses)])  # noqa: E731
    share = carried(flat(b), flat(fts[0]), flat(grandchild), [flat(f) for f in fts[1:]])
    assert WHOLE_CHANGE < share < 1.1
    tree = build_tree([b, *fts, grandchild])
    assert sorted((e.parent, e.child) for e in tree.edges) == [
        ("base", "ft0"), ("base", "ft1"), ("base", "ft2"), ("ft0", "grandchild")]
