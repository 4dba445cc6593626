"""The fingerprint store: compact vectors of many fingerprints in one memory-mapped folder, classified in bulk.

`embed` makes the vectors, `store` reads and writes the folder, `build` fills it from the cache or from
fingerprint files, `nearest` classifies every row against references by blocked matrix products.
"""

from lineage.store.build import BuildReport, build_store, fingerprint_sources
from lineage.store.embed import Embedder, EmbeddingOptions, layout_of, layout_overlap
from lineage.store.nearest import ReferenceVectors, StoreVerdicts, classify_store, reference_vectors, verdict_rows
from lineage.store.store import Store, StoreWriter, read_store_info

__all__ = [
    "BuildReport",
    "Embedder",
    "EmbeddingOptions",
    "ReferenceVectors",
    "Store",
    "StoreVerdicts",
    "StoreWriter",
    "build_store",
    "classify_store",
    "fingerprint_sources",
    "layout_of",
    "layout_overlap",
    "read_store_info",
    "reference_vectors",
    "verdict_rows",
]
