"""Reference packs: known models' fingerprints in one versioned, checksummed folder (see `pack`)."""

from lineage.refs.pack import (
    PACK_FILE,
    PackReference,
    build_pack,
    is_pack,
    pack_manifest_path,
    read_pack_info,
    read_pack_settings,
    verify_pack,
    write_pack,
)

__all__ = [
    "PACK_FILE",
    "PackReference",
    "build_pack",
    "is_pack",
    "pack_manifest_path",
    "read_pack_info",
    "read_pack_settings",
    "verify_pack",
    "write_pack",
]
