"""Reference sets: manifests (`manifest`), reference packs (`pack`, `build`, `builtin`), and the one door
that opens any of them (`open`)."""

from lineage.refs.build import build_pack
from lineage.refs.manifest import Manifest, ManifestRow, read_manifest
from lineage.refs.open import open_references, verify_pack
from lineage.refs.pack import (
    PACK_FILE,
    PackReference,
    is_pack,
    pack_manifest_path,
    read_pack_info,
    read_pack_settings,
    write_pack,
)

__all__ = [
    "PACK_FILE",
    "Manifest",
    "ManifestRow",
    "PackReference",
    "build_pack",
    "is_pack",
    "open_references",
    "pack_manifest_path",
    "read_manifest",
    "read_pack_info",
    "read_pack_settings",
    "verify_pack",
    "write_pack",
]
