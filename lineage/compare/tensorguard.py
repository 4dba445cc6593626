"""The published TensorGuard recipe, exactly: 15 features, StandardScaler, Euclidean distance.

The paper standardises every feature over all the models it clusters (its scaler is fit on the whole
table), then runs K-Means seeded with the known bases. A constant feature (the published files all have
`num_layers == 10`) has zero variance; scikit-learn's scaler then leaves it unscaled, and centred it is 0
for everyone, so it drops out as it does in the paper. The paper's "new model" rule is a fixed distance of
7 to the nearest base, kept here as `paper_threshold`; lineage calibrates its threshold by default.

The recipe is *transductive*: scaler and K-Means are fit on the references and suspects together, so one
suspect's family can depend on which others are clustered with it. It is kept that way (`transductive`),
so that `--method tensorguard` reproduces the paper's table; lineage's own method never does this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.preprocessing import StandardScaler

from lineage.compare.base import Method, feature_matrix, pairwise_euclidean, population
from lineage.errors import ClassificationError
from lineage.fingerprint import Fingerprint

PAPER_THRESHOLD = 7.0


class TensorGuardMethod(Method):
    """The paper's method: standardised 15 features, Euclidean distance, K-Means on the features.

    Example:
        >>> from lineage.fingerprint import load_fingerprint
        >>> from lineage.data import DEMO_MANIFEST
        >>> fps = [load_fingerprint(p) for p in sorted(DEMO_MANIFEST.parent.glob("*_features.json"))]
        >>> TensorGuardMethod().distances(fps[:3], fps[:3]).shape
        (3, 3)
    """

    name = "tensorguard"
    paper_threshold = PAPER_THRESHOLD
    transductive = True

    def _scaled(self, pop: Sequence[Fingerprint]) -> tuple[np.ndarray, dict[int, int]]:
        if not pop:
            raise ClassificationError("no fingerprints to compare")
        scaled = StandardScaler().fit_transform(feature_matrix(pop))
        return scaled, {id(fp): i for i, fp in enumerate(pop)}

    def distances(self, a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> np.ndarray:
        """Euclidean distances between standardised features, the scaler fit on `a` and `b` together."""
        if not a or not b:
            return np.zeros((len(a), len(b)))
        scaled, row = self._scaled(population(a, b))
        return pairwise_euclidean(scaled[[row[id(fp)] for fp in a]], scaled[[row[id(fp)] for fp in b]])

    def vectors(self, fps: Sequence[Fingerprint], references: Sequence[Fingerprint]) -> np.ndarray:
        """The standardised features themselves (the paper clusters in feature space)."""
        scaled, row = self._scaled(population(fps, references))
        return scaled[[row[id(fp)] for fp in fps]]

    def embed(self, fps: Sequence[Fingerprint], references: Sequence[Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
        """Standardised features of `fps` and their distances to `references`, from one scaler fit."""
        scaled, row = self._scaled(population(fps, references))
        vectors = scaled[[row[id(fp)] for fp in fps]]
        return vectors, pairwise_euclidean(vectors, scaled[[row[id(fp)] for fp in references]])

    def describe(self, fps: Sequence[Fingerprint]) -> str:
        return "tensorguard: 15 published features, StandardScaler over all models, Euclidean, K-Means"
