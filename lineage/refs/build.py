"""Building a reference pack: a manifest's references fingerprinted (or loaded, or taken from the cache) and
written as one pack folder (`lineage.refs.pack.write_pack`), their hub commits in its `hub_id` column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lineage.errors import PackError
from lineage.fingerprint.format import Fingerprint
from lineage.fingerprint.source import FingerprintSource
from lineage.io.hub import HUB_SCHEME
from lineage.refs.open import open_references
from lineage.refs.pack import PackReference, write_pack


def build_pack(
    manifest: str | Path,
    out: str | Path,
    *,
    source: FingerprintSource | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    force: bool = False,
) -> Path:
    """Fingerprint (or load, or take from the cache) a manifest's references and write them as a pack.

    Args:
        manifest: a manifest CSV (or a pack, or `builtin`); its references (role=base rows, or all rows) are
            packed.
        out: the pack folder.
        source: how to fingerprint them (device, probe settings, cache); defaults when None.
        progress: called as `progress(done, total, name)` after each reference.
        force: replace an existing pack.

    Returns:
        The pack folder.

    Raises:
        ManifestError: bad manifest.
        PackError: a reference could not be fingerprinted (every failure is named), or see `write_pack`.
    """
    source = source or FingerprintSource()
    refs = open_references(manifest).references
    outcomes = source.gather([(r.name, r.path, r) for r in refs], progress)
    failed = [f"{o.name}: {o.error}" for o in outcomes if not o.ok]
    if failed:
        raise PackError(f"{manifest}: {len(failed)} reference(s) could not be fingerprinted: " + "; ".join(failed))
    packed = [
        PackReference(o.key.name, o.key.family, o.fingerprint, o.key.base, _hub_id(o.key, o.fingerprint),
                      getattr(o.key, "license", None))
        for o in outcomes
    ]
    return write_pack(packed, out, created_by=" ".join(["lineage refs build", str(manifest)]), force=force)


def _hub_id(row: object, fp: Fingerprint) -> str | None:
    hub = getattr(row, "hub_id", None) or fp.settings.get("source")
    rev = fp.settings.get("source_revision")
    if not hub:
        return None
    hub = str(hub).removeprefix(HUB_SCHEME)
    return f"{hub.split('@')[0]}@{rev}" if rev else hub
