"""Fingerprinting: stream a checkpoint through the probes (`pipeline`), the file format (`format`), the
content-addressed cache (`cache`) and batches of models (`batch`).

The fingerprint type and its file format are re-exported here; the pipeline (which imports torch) is not.
"""

from lineage.features.sketch import CIRCUITS
from lineage.features.tensorguard import TENSORGUARD_FEATURES
from lineage.fingerprint.format import (
    Fingerprint,
    ModelSummary,
    fingerprint_path,
    fingerprint_stem,
    is_fingerprint_file,
    load_fingerprint,
    save_fingerprint,
)

__all__ = [
    "CIRCUITS",
    "TENSORGUARD_FEATURES",
    "Fingerprint",
    "ModelSummary",
    "fingerprint_path",
    "fingerprint_stem",
    "is_fingerprint_file",
    "load_fingerprint",
    "save_fingerprint",
]
