"""The sign-flip test: how surprising is a sum of terms whose signs are fair coins under the null?

If the null makes each term's sign a fair coin, independent of every term's size (the case of the weight
test, `lineage.compare.identity`: a symmetry of training flips each one), then conditional on the sizes
`|f_i|` the sum `T = sum f_i` is distributed as `sum eps_i |f_i|` with independent Rademacher `eps_i`. The
p-value is bounded with the tight Gaussian bound of Bentkus and Dzindzalieta (2015, "A tight Gaussian
bound for weighted sums of Rademacher random variables", Bernoulli 21(2)):

    P(sum eps_i a_i >= x) <= c * (1 - Phi(x))   for sum a_i^2 = 1,  c = 1 / (4 (1 - Phi(sqrt 2))) ~ 3.18.

The bound holds for every sample size and every x: no normal approximation, no fitted constant. It is at
most 3.18 times the Gaussian tail, so in the tail it is as sharp as a test can be, and it is computed in
log space, so a p-value far below the smallest double is still a number (`log10_p`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

#: Bentkus and Dzindzalieta's constant 1 / (4 P(Z >= sqrt 2)).
BD_CONSTANT = 1.0 / (4.0 * 0.5 * math.erfc(1.0))
_LOG10_E = math.log10(math.e)


@dataclass(frozen=True)
class SignTest:
    """One sign-flip test.

    Attributes:
        z: `sum f / sqrt(sum f^2)`; 0 when every term is 0.
        log10_p: log10 of the p-value bound (<= 0).
        signs: number of independent signs (terms).
        mean: mean term (the agreement the test rests on: about 1 for a copy, 0 for unrelated models).
    """

    z: float
    log10_p: float
    signs: int
    mean: float

    @property
    def p_value(self) -> float:
        """The p-value bound as a float (0.0 only where it is below the smallest double: see `log10_p`)."""
        return 10.0**self.log10_p

    def to_dict(self) -> dict:
        return {"z": self.z, "log10_p": self.log10_p, "signs": self.signs, "mean": self.mean}


def log10_rademacher_tail(z: float) -> float:
    """log10 of `min(1, c * P(N(0, 1) >= z))`, the bound on `P(sum eps_i a_i >= z)` for unit `sum a_i^2`."""
    if math.isnan(z):
        return 0.0  # no evidence: a NaN must never read as p = 0
    if math.isinf(z):
        return 0.0 if z < 0 else -math.inf
    return min(0.0, math.log10(BD_CONSTANT) + float(log_ndtr(-z)) * _LOG10_E)


def stable(x: float) -> float:
    """`x` to 12 significant digits: sums of the same numbers in another memory alignment differ in the last
    bits (SIMD summation order), and a verdict must not depend on where its arrays happened to be allocated."""
    return float(f"{x:.12g}")


def sign_test(terms: np.ndarray) -> SignTest:
    """The sign-flip test of `sum terms > 0` when each term's sign is a fair coin under the null.

    Args:
        terms: the terms, one per independent sign (float array of any shape).

    Returns:
        The test; `log10_p` 0 for an empty or all-zero sum.

    Example:
        >>> round(sign_test(np.ones(100)).z, 6)
        10.0
    """
    f = np.asarray(terms, dtype=np.float64).ravel()
    f = f[np.isfinite(f)]
    norm = float(np.sqrt(np.sum(f * f)))
    if norm == 0.0:
        return SignTest(0.0, 0.0, int(f.size), 0.0)
    z = stable(float(f.sum()) / norm)
    return SignTest(z, stable(log10_rademacher_tail(z)), int(f.size), stable(float(f.mean())))
