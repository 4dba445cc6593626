"""The reference catalog: small models of the real architectures, and suspects derived from them.

Only this package needs the ``catalog`` extra (transformers, peft, tokenizers); importing it is cheap,
the heavy libraries load when a build starts.
"""

from lineage.catalog.build import BuildEvent, BuildOptions, build_catalog, write_catalog_manifest
from lineage.catalog.manifest import COLUMNS, MANIFEST_NAME
from lineage.catalog.recipe import Recipe
from lineage.catalog.recipe_toml import load_recipe
from lineage.catalog.truth import merge_truth

__all__ = [
    "COLUMNS",
    "MANIFEST_NAME",
    "BuildEvent",
    "BuildOptions",
    "Recipe",
    "build_catalog",
    "load_recipe",
    "merge_truth",
    "write_catalog_manifest",
]
