"""Quantised copy or not: does a suspect's own quantisation explain how far its weights lie from a reference's?

A quantised checkpoint's reader knows how far its rounding moved every tensor (`lineage.io.quant`: `w^2 / 12` a
value, `w` the width of the rounding cell of the value stored), and the fingerprint records, per tensor, the
energy that rounding is expected to put into the tensor's raw responses (`Fingerprint.quant_noise`). The raw
responses are random projections linear in the weights, so a suspect that IS the reference quantised differs
from it, tensor by tensor, by rounding noise alone: the residual energy `O = sum_t ||R_s,t - R_r,t||^2` over its
tensors comes out near the expected `E = sum_t E_t`. A model fine-tuned and then quantised carries its change on
top: `O = E + ||delta||^2`. The statistic is the ratio `sqrt(O / E)`, 1 for rounding alone; the suspect is a
**quantised copy** when it is at most its formats' limit:

- round-to-nearest formats (FP8, bitsandbytes, MXFP4, compressed-tensors floats): `ROUNDING_RATIO`. Copies of
  seed 0's tiny model in every format came out 0.94-1.04, the same model fine-tuned (the tests' stand-in, a
  Gaussian change of 10% of the weights' scale) and then quantised 1.33 and above; seed 1 checks both
  (`python bench/calibrate_quant_copy.py --seed 0|1` prints them).
- formats whose quantiser may also compensate errors (GPTQ's updates of the weights not yet rounded; llm-
  compressor's GPTQ into compressed-tensors integers; AWQ's clipping): `COMPENSATING_RATIO`. GPTQ itself,
  run on synthetic Hessians as anisotropic as a `1 / i^2` spectrum, moved weights up to 1.7x what rounding
  alone does (the same script prints it).

A fine-tune whose change is smaller than `sqrt(limit^2 - 1)` times the rounding noise (0.57x for round-to-
nearest formats, 1.7x for the others) cannot be told from a copy this way: quantisation all but erases it, and
the model is called a quantised copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lineage.fingerprint.format import Fingerprint
from lineage.io.constants import DTYPE_BITS

#: The largest `sqrt(observed / expected)` of a quantised copy in a round-to-nearest format.
ROUNDING_RATIO = 1.15
#: The same for formats whose quantiser may compensate rounding errors by moving other weights (GPTQ).
COMPENSATING_RATIO = 2.0
#: Format labels (`QuantWeight.dtype` prefixes) of the formats `COMPENSATING_RATIO` holds for.
COMPENSATING = ("GPTQ", "AWQ", "CT-int")
QUANTISED_COPY = "quantised copy"


@dataclass(frozen=True)
class QuantisedFit:
    """How a quantised suspect's responses sit against a reference's.

    Attributes:
        formats: the suspect's quantised formats (`GPTQ-4bit`, `bnb-nf4`...).
        tensors: the tensors compared (every matrix with raw responses; the quantised ones carry noise).
        observed: the residual energy of the raw responses, suspect minus reference.
        expected: the energy rounding alone puts there (the suspect's, and the reference's if it is quantised).
        ratio: `sqrt(observed / expected)`; inf when a tensor of the suspect has no counterpart in the reference.
        limit: the largest ratio of a quantised copy in these formats.
    """

    formats: tuple[str, ...]
    tensors: int
    observed: float
    expected: float
    ratio: float
    limit: float

    @property
    def copy(self) -> bool:
        """Whether rounding explains the residual: a quantised copy."""
        return self.ratio <= self.limit

    def to_dict(self) -> dict:
        """The `quantisation` entry of a verdict's evidence."""
        return {
            "formats": list(self.formats),
            "tensors": self.tensors,
            "observed": self.observed,
            "expected": self.expected,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,
            "limit": self.limit,
            "quantised_copy": self.copy,
        }


def quantised_formats(fp: Fingerprint) -> tuple[str, ...]:
    """The quantised formats a fingerprint's checkpoint stores (its dtypes that are no safetensors dtype)."""
    return tuple(d for d in (fp.summary.dtypes if fp.summary else ()) if d not in DTYPE_BITS)


def quantised_fit(suspect: Fingerprint, reference: Fingerprint) -> QuantisedFit | None:
    """How far the quantised `suspect` lies from `reference`, against what its rounding explains (module
    docstring); None when the suspect records no quantisation noise (unquantised, or fingerprinted before).

    Example:
        >>> quantised_fit(gptq_copy, base).copy  # doctest: +SKIP
        True
    """
    if not suspect.quant_noise:
        return None
    observed = expected = 0.0
    missing = False
    for role, resp in suspect.responses.items():
        ref = reference.responses.get(role)
        if ref is None or np.shape(ref) != np.shape(resp):
            missing = True  # another layout or depth: not the reference quantised
            continue
        observed += float(np.sum((np.asarray(resp, np.float64) - np.asarray(ref, np.float64)) ** 2))
        expected += suspect.quant_noise.get(role, 0.0) + reference.quant_noise.get(role, 0.0)
    ratio = math.inf if missing or expected <= 0 else math.sqrt(observed / expected)
    formats = quantised_formats(suspect)
    return QuantisedFit(formats, len(suspect.responses), observed, expected, ratio, copy_limit(formats))


def copy_limit(formats: tuple[str, ...]) -> float:
    """The largest ratio a quantised copy in `formats` shows (the wider limit where any format compensates)."""
    return COMPENSATING_RATIO if any(f.startswith(COMPENSATING) for f in formats) else ROUNDING_RATIO
