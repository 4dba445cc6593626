"""Which pairs of models the tree tests: nearest neighbours by compact vector, not every pair.

The weight test (`lineage.compare.identity`) costs tens of milliseconds a pair: every pair of 10,000 models
is 50 million tests, days of CPU. A model's parent and children are among the models whose function is
closest to it, so each model is tested only against its `k` nearest neighbours by the store's compact
vectors (`lineage.store.embed`: dot products estimate the sketch similarity, which a derivative shares
with its relatives, disguises included, since the sketches are unchanged by them). The neighbours come from
blocked matrix products, so the cost is `n^2 dim` multiply-adds (10,000 models: 25 G, seconds) plus
`n k` weight tests at most, each pair once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lineage.fingerprint import Fingerprint
from lineage.store.embed import Embedder, EmbeddingOptions

#: Neighbours per model. A family's tree is connected through each model's nearest relatives: 16 covers a
#: model with a dozen siblings that all sit at one distance from it (a base fine-tuned a dozen ways).
DEFAULT_NEIGHBOURS = 16
_BLOCK = 2048


def compact_vectors(fps: Sequence[Fingerprint], options: EmbeddingOptions | None = None) -> np.ndarray:
    """The compact vectors `[n, dim]` of fingerprints with sketches (a store holds the same vectors)."""
    return Embedder(options).embed_many(list(fps))


def candidate_pairs(vectors: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS) -> list[tuple[int, int]]:
    """Each model's `neighbours` nearest others by dot product, as sorted pairs `(i, j)`, `i < j`, once each.

    Args:
        vectors: float `[n, dim]` compact vectors (rows of a store, or `compact_vectors`).
        neighbours: how many nearest others each model is paired with (all of them when `n - 1` or fewer).

    Returns:
        The pairs, sorted; every pair when `n <= neighbours + 1`.

    Example:
        >>> candidate_pairs(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), neighbours=1)
        [(0, 1), (1, 2)]
    """
    if neighbours < 1:
        raise ValueError("neighbours must be >= 1")
    n = len(vectors)
    if n <= neighbours + 1:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    x = np.asarray(vectors, dtype=np.float32)
    pairs: set[tuple[int, int]] = set()
    for start in range(0, n, _BLOCK):
        sims = x[start : start + _BLOCK] @ x.T  # [block, n]
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # never one's own neighbour
        # argpartition, then a stable order among the chosen: ties broken by index, the same on every run
        top = np.argpartition(-sims, neighbours - 1, axis=1)[:, :neighbours]
        for r, cols in enumerate(top):
            i = r + start
            pairs.update((min(i, int(j)), max(i, int(j))) for j in cols)
    return sorted(pairs)
