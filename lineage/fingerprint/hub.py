"""Fingerprints of model hub models (`hf://org/name[@revision]`): keyed by commit, fetched only on a miss.

The revision is resolved to its commit first (one small request, `lineage.io.hub.resolve`); the cache key
is made of the repository, that commit, the probe settings and the lineage version, so a model already
fingerprinted at that commit costs no download at all, and a new push to the branch misses the cache. On a
miss the weights are fetched into a temporary folder, fingerprinted and deleted (`lineage.io.hub.fetched`).
The fingerprint records where it came from: `settings["source"]` (`hf://org/name`) and
`settings["source_revision"]` (the commit), which reference packs carry into their `hub_id` column.
`lineage.fingerprint.obtain` decides when each step runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import TYPE_CHECKING

from lineage import __version__
from lineage.fingerprint.format import Fingerprint
from lineage.io.hub import HUB_SCHEME, HubModel

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions, Progress


def hub_cache_key(model: HubModel, options: FingerprintOptions) -> str:
    """The cache key of a hub model at one commit (no weights needed to compute it)."""
    doc = {"hub": model.repo_id, "commit": model.commit, "settings": options.settings(), "v": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def stamped(fp: Fingerprint, model: HubModel, name: str | None = None) -> Fingerprint:
    """`fp` named `name` (the repository's name when None) and stamped with the repository and commit."""
    settings = {**fp.settings, "source": f"{HUB_SCHEME}{model.repo_id}", "source_revision": model.commit}
    return replace(fp, name=name or model.name, settings=settings)


def fingerprint_hub_model(
    model: HubModel, options: FingerprintOptions, progress: Progress | None = None
) -> Fingerprint:
    """Fetch a resolved hub model's files, fingerprint them and delete them (unless downloads are kept:
    `lineage.io.hub_checkpoint.HubCheckpoint`).

    Returns:
        The fingerprint, named after the repository and stamped with its commit.

    Raises:
        HubError: a file could not be fetched. CheckpointError and others: as for a local model.
    """
    from lineage.fingerprint.pipeline import fingerprint_model

    return stamped(fingerprint_model(model, options, progress=progress), model)
