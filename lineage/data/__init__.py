"""Data shipped in the package, by path: the published TensorGuard fingerprints (see `tensorguard/README.md`).

Only constants live here, so that any layer may name the files without importing the code that reads them.
"""

from pathlib import Path

#: The built-in demo catalog: the 58 published TensorGuard fingerprints (Apache-2.0, see its README).
DEMO_MANIFEST = Path(__file__).resolve().parent / "tensorguard" / "manifest.csv"
