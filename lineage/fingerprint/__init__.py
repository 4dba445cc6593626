"""Fingerprinting: stream a checkpoint through the probes (`pipeline`), the file format (`format`, as files
and as bytes), the content-addressed cache (`cache`), how one model's fingerprint is had (`obtain`: its file,
the cache, or computed; `hub` for hf:// models by commit), many models (`gather`, `batch`) on an executor
(`executors`: local, process, Ray), and a job's choice of all that (`source`).

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
