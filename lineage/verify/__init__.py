"""Declared lineage checked against the weights (`lineage verify`).

`declarations` picks what a model declares and resolves it to the manifest; `outcome` compares it with the
weights' verdict (consistent, contradicted, undeclared, unverifiable); `bom` writes the CycloneDX ML-BOM.
The job that runs it over models is `lineage.jobs.verify.verify_paths`.
"""

from lineage.verify.declarations import Declaration, ReferenceIndex, declared_lineage
from lineage.verify.outcome import (
    CONSISTENT,
    CONTRADICTED,
    OUTCOMES,
    UNDECLARED,
    UNVERIFIABLE,
    VerifyOutcome,
    VerifyResult,
    judge,
)

__all__ = [
    "CONSISTENT",
    "CONTRADICTED",
    "OUTCOMES",
    "UNDECLARED",
    "UNVERIFIABLE",
    "Declaration",
    "ReferenceIndex",
    "VerifyOutcome",
    "VerifyResult",
    "declared_lineage",
    "judge",
]
