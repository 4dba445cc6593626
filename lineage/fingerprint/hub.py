"""Fingerprints of model hub models (`hf://org/name[@revision]`): keyed by commit, fetched only on a miss.

The revision is resolved to its commit first (one small request, `lineage.io.hub.resolve`); the cache key
is made of the repository, that commit, the probe settings and the lineage version, so a model already
fingerprinted at that commit costs no download at all, and a new push to the branch misses the cache. On a
miss the weights are fetched into a temporary folder, fingerprinted and deleted (`lineage.io.hub.fetched`).
The fingerprint records where it came from: `settings["source"]` (`hf://org/name`) and
`settings["source_revision"]` (the commit), which reference packs carry into their `hub_id` column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage import __version__
from lineage.fingerprint.format import Fingerprint
from lineage.io.hub import HUB_SCHEME, HubModel, fetched, resolve

if TYPE_CHECKING:
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.pipeline import FingerprintOptions

CACHED, FINGERPRINTED = "cached", "fingerprinted"  # as lineage.fingerprint.cache names them


def hub_cache_key(model: HubModel, options: FingerprintOptions) -> str:
    """The cache key of a hub model at one commit (no weights needed to compute it)."""
    doc = {"hub": model.repo_id, "commit": model.commit, "settings": options.settings(), "v": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _stamped(fp: Fingerprint, model: HubModel, name: str | None) -> Fingerprint:
    settings = {**fp.settings, "source": f"{HUB_SCHEME}{model.repo_id}", "source_revision": model.commit}
    return replace(fp, name=name or model.name, settings=settings)


def cached_hub_fingerprint(
    path: str | Path,
    options: FingerprintOptions | None,
    cache: FingerprintCache | None,
    name: str | None = None,
) -> tuple[Fingerprint, str] | None:
    """The cached fingerprint of a hub model at its current commit, or None (the model must be fetched).

    Raises:
        HubError: the repository or revision cannot be resolved.
    """
    if cache is None:
        return None
    from lineage.fingerprint.pipeline import FingerprintOptions

    model = resolve(path)
    fp = cache.get(hub_cache_key(model, options or FingerprintOptions()))
    return None if fp is None else (_stamped(fp, model, name), CACHED)


def obtain_hub_fingerprint(
    path: str | Path,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
    progress: object = None,
) -> tuple[Fingerprint, str]:
    """The fingerprint of a hub model: from the cache by commit, else fetched, fingerprinted and cached.

    Args:
        path: `hf://org/name[@revision]`.
        options: probe settings (defaults when None).
        cache: the fingerprint cache, or None.
        name: the name to give it (a manifest's row name); the repository's name when None.
        progress: passed to `fingerprint_model` (weight bytes).

    Returns:
        `(fingerprint, CACHED or FINGERPRINTED)`.

    Raises:
        HubError: resolving or fetching failed. CheckpointError and others: as for a local model.
    """
    from lineage.fingerprint.pipeline import FingerprintOptions, fingerprint_model

    options = options or FingerprintOptions()
    model = resolve(path)
    key = hub_cache_key(model, options)
    if cache is not None:
        fp = cache.get(key)
        if fp is not None:
            return _stamped(fp, model, name), CACHED
    with fetched(model) as folder:
        fp = fingerprint_model(folder, options, progress=progress)
    fp = _stamped(fp, model, None)
    if cache is not None:
        cache.put(key, fp)
    return (_stamped(fp, model, name) if name else fp), FINGERPRINTED
