"""What a verdict shows besides its p-value: per-circuit agreement, shared tokens, the comparison basis.

Pure functions of fingerprints with sketches; `lineage.decide` calls them for the references a verdict
names, so they favour clarity over batching.
"""

from __future__ import annotations

from lineage.compare.similarity import (
    CIRCUIT_ORDER,
    comparison_basis,
    comparison_note,
    shared_positions,
    sketch_similarity_matrix,
    vocabulary_overlap,
)
from lineage.fingerprint import Fingerprint


def circuit_similarities(a: Fingerprint, b: Fingerprint) -> dict[str, float]:
    """Correlation of each circuit of `a` and `b` (layer circuits: best aligned mean)."""
    out = {}
    for circuit in CIRCUIT_ORDER:
        if circuit in a.sketches and circuit in b.sketches:
            out[circuit] = round(float(sketch_similarity_matrix([a], [b], {circuit: 1.0})[0, 0]), 6)
    return out


def family_evidence(a: Fingerprint, b: Fingerprint) -> dict:
    """The family-level evidence: anchor tokens shared and the output-embedding (unembedding) similarity."""
    out: dict = {"reference": b.name, "basis": comparison_basis(a, b)}
    if a.anchors is None or b.anchors is None:
        return out
    keep_a, _ = shared_positions(a, b)
    out["shared_anchors"] = int(len(keep_a))
    out["anchors"] = int(min(len(a.anchors), len(b.anchors)))
    out["vocabulary_overlap"] = vocabulary_overlap(a, b)
    if "unembed" in a.sketches and "unembed" in b.sketches:
        out["unembed_similarity"] = round(float(sketch_similarity_matrix([a], [b], {"unembed": 1.0})[0, 0]), 6)
    return out


def basis(a: Fingerprint, b: Fingerprint) -> dict:
    """How the pair was compared: by token strings or by ids, and why when by ids."""
    return {"basis": comparison_basis(a, b), "note": comparison_note(a, b)}
