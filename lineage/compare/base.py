"""The `Method` base class: how fingerprints become distances and vectors.

A method answers two questions about fingerprints. `distances(a, b)` is how far each model of `a` is from
each model of `b` (0 = the same model). `vectors(fps, references)` places models in a space where K-Means,
seeded with the references' own vectors, can cluster them. Both take whole lists so that methods compute
everything in batched array operations: a scan of 10,000 suspects against 8 references is one call.

Feature methods standardise over a population (the paper fits its scaler on every model it clusters), so
their distances depend on which models are compared together. That population is always the union of the
arguments, which makes `distances(suspects, refs)` agree with `vectors(refs + suspects, refs)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from lineage.fingerprint import Fingerprint

#: How suspects get a family: the paper's K-Means seeded with the references, or the nearest reference.
ASSIGNMENTS: tuple[str, ...] = ("kmeans", "nearest")


class Method(ABC):
    """A way to compare fingerprints.

    Attributes:
        name: the method's registry name (`--method`).
        paper_threshold: the fixed "new model" distance the method's paper uses, or None.
        transductive: whether `classify` clusters references and suspects together (see below).
    """

    name: ClassVar[str]
    paper_threshold: ClassVar[float | None] = None
    #: True for a method that clusters references and suspects together (the paper's recipe): its
    #: `classify` answers depend on the batch, and only `predict` judges a suspect alone.
    transductive: ClassVar[bool] = False

    @abstractmethod
    def distances(self, a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> np.ndarray:
        """Distances `[len(a), len(b)]` (float64, >= 0) of every model of `a` to every model of `b`."""

    @abstractmethod
    def vectors(self, fps: Sequence[Fingerprint], references: Sequence[Fingerprint]) -> np.ndarray:
        """Vectors `[len(fps), d]` (float64) for clustering, comparable with the references' own vectors."""

    def embed(self, fps: Sequence[Fingerprint], references: Sequence[Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of `fps` and their distances to `references`, in one pass where the method allows it.

        Args:
            fps: the models to place (the classifier passes references + suspects).
            references: the known models.

        Returns:
            `(vectors [len(fps), d], distances [len(fps), len(references)])`.
        """
        return self.vectors(fps, references), self.distances(fps, references)

    def assignment(self, fps: Sequence[Fingerprint]) -> str:
        """How the classifier should assign families for these fingerprints (one of `ASSIGNMENTS`)."""
        return "kmeans"

    def describe(self, fps: Sequence[Fingerprint]) -> str:
        """One line saying what this method does with these fingerprints (for reports)."""
        return self.name


def population(a: Sequence[Fingerprint], b: Sequence[Fingerprint]) -> list[Fingerprint]:
    """The union of `a` and `b`, each fingerprint once (by identity), in order of first appearance.

    Feature methods fit their scaling on this list; deduplicating keeps a model passed on both sides
    (the references inside `vectors(refs + suspects, refs)`) from being counted twice.
    """
    seen: set[int] = set()
    out: list[Fingerprint] = []
    for fp in (*a, *b):
        if id(fp) not in seen:
            seen.add(id(fp))
            out.append(fp)
    return out


def feature_matrix(fps: Sequence[Fingerprint]) -> np.ndarray:
    """The paper's 15 features of each fingerprint, `[len(fps), 15]` float64."""
    if not fps:
        return np.zeros((0, 15))
    return np.stack([fp.tensorguard_vector() for fp in fps])


def pairwise_euclidean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances `[len(x), len(y)]`, exact zeros on identical rows.

    scipy's cdist rather than the `|x|^2 + |y|^2 - 2xy` expansion: the expansion loses the zeros a model
    has with itself to rounding, and a reference must be at distance exactly 0 from itself.
    """
    from scipy.spatial.distance import cdist

    if len(x) == 0 or len(y) == 0:
        return np.zeros((len(x), len(y)))
    return cdist(x, y, metric="euclidean")
