"""How one model's fingerprint is obtained: loaded from its file, found in the cache, or computed.

`locate` settles what costs no probing (a fingerprint file is loaded, a cache hit is read; a missing path
fails here) and otherwise returns what is left to do as a `Pending`: the model and its cache key, computed
once (a folder's key reads its headers; a hub model's needs one request, which resolves its revision to the
commit fingerprinted). `compute` fingerprints a `Pending` and stores it in the cache under that key.
`obtain_fingerprint` is the two in a row. The executors run `locate` on the driver and `compute` on a
worker (`lineage.fingerprint.executors.tasks`), so the serial loop and every worker take one code path for
every kind of model, `hf://` models included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.errors import CheckpointError
from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.format import Fingerprint, is_fingerprint_file, load_fingerprint
from lineage.fingerprint.hub import fingerprint_hub_model, hub_cache_key, stamped
from lineage.io.hub import HubModel, is_hub_path, resolve
from lineage.io.names import model_name

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

#: How a fingerprint was obtained: read from a fingerprint file, found in the cache, or computed.
LOADED, CACHED, FINGERPRINTED = "loaded", "cached", "fingerprinted"
#: `weights(done_bytes, total_bytes)` while one model's weights stream (see `fingerprint_model`).
WeightProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Pending:
    """A model that must be fingerprinted.

    Attributes:
        path: where it is (a model folder, a weights file, a GGUF, an adapter, or `hf://...`).
        key: its cache key; None when there is no cache.
        hub: for a hub model, the commit its revision resolved to (what is fetched and fingerprinted).
        model: the digest of a local model's headers, which its cache entry must have been made from.
    """

    path: str | Path
    key: str | None = None
    hub: HubModel | None = None
    model: str | None = None


def needs_probing(path: str | Path) -> bool:
    """Whether `path` names a model to fingerprint (not a fingerprint file, not a missing path): the first
    such model of a batch is when the probe settings, and the probing stack, are needed."""
    return is_hub_path(path) or (Path(path).exists() and not is_fingerprint_file(path))


def locate(
    path: str | Path,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
) -> tuple[Fingerprint, str] | Pending:
    """The fingerprint of one model when it costs no probing, else what is left to compute.

    Args:
        path: a fingerprint file, a model (folder, weights file, GGUF, adapter) or `hf://org/name[@revision]`.
        options: probe settings for models (defaults when None).
        cache: where to look; None looks nowhere.
        name: the name to give the fingerprint (a manifest's row name); its model's when None.

    Returns:
        `(fingerprint, LOADED or CACHED)`, or a `Pending` for `compute`.

    Raises:
        LineageError: the path is missing, its headers are unreadable (the cache key reads them), or a hub
            path cannot be resolved.
    """
    if is_hub_path(path):
        model = resolve(path)
        key = hub_cache_key(model, _options(options)) if cache is not None else None
        fp = cache.get(key) if key is not None else None
        return Pending(path, key, model) if fp is None else (stamped(fp, model, name), CACHED)
    path = Path(path)
    if is_fingerprint_file(path):
        return _named(load_fingerprint(path), LOADED, path, name), LOADED
    if not path.exists():
        raise CheckpointError(path, "no such file or folder; check the path (manifest paths are relative to it)")
    if cache is None:
        return Pending(path)
    from lineage.fingerprint.pipeline import model_identity

    # Reads the headers (a broken checkpoint fails here, in one line), and with verify_weights every byte.
    key, model = model_identity(path, _options(options), verify_weights=cache.verify_weights)
    fp = cache.get(key, model)  # checked: its own digest, made under this key from these headers, finite
    return Pending(path, key, model=model) if fp is None else (_named(fp, CACHED, path, name), CACHED)


def compute(
    pending: Pending,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
    progress: WeightProgress | None = None,
) -> tuple[Fingerprint, str]:
    """Fingerprint a pending model and store it in the cache under its key.

    An entry another process wrote under the key meanwhile (a worker sharing the cache) is taken instead.

    Returns:
        `(fingerprint, FINGERPRINTED or CACHED)`.

    Raises:
        LineageError: the model cannot be fetched or fingerprinted.
    """
    key = pending.key if cache is not None else None
    # Quietly: `locate` said already why an entry there was not used.
    fp = cache.get(key, pending.model, warn=False) if key is not None else None
    how = CACHED if fp is not None else FINGERPRINTED
    if fp is None:
        if pending.hub is not None:
            fp = fingerprint_hub_model(pending.hub, _options(options), progress)
        else:
            from lineage.fingerprint.pipeline import fingerprint_model

            fp = fingerprint_model(pending.path, _options(options), progress=progress)
        if key is not None:
            cache.put(key, fp, pending.model)
    if pending.hub is not None:
        return stamped(fp, pending.hub, name), how
    return _named(fp, how, Path(pending.path), name), how


def obtain_fingerprint(
    path: str | Path,
    options: FingerprintOptions | None = None,
    cache: FingerprintCache | None = None,
    name: str | None = None,
    progress: WeightProgress | None = None,
) -> tuple[Fingerprint, str]:
    """The fingerprint of one model: loaded from a fingerprint file, from the cache, or computed.

    Args:
        path: a fingerprint file, a model (folder, weights file, GGUF, adapter) or `hf://org/name[@revision]`.
        options: probe settings for models (defaults when None).
        cache: where to look first and store after computing; None computes every time.
        name: the name to give the fingerprint (a manifest's row name); the file's or folder's when None.
        progress: called as `progress(done_bytes, total_bytes)` while the weights stream (when computed).

    Returns:
        `(fingerprint, how)` with `how` one of LOADED, CACHED, FINGERPRINTED.

    Raises:
        LineageError: the path is missing, not a model, or the model cannot be fingerprinted.
    """
    found = locate(path, options, cache, name)
    if isinstance(found, Pending):
        return compute(found, options, cache, name, progress)
    return found


def _options(options: FingerprintOptions | None) -> FingerprintOptions:
    if options is not None:
        return options
    from lineage.fingerprint.pipeline import FingerprintOptions  # the probing stack, only when a model needs it

    return FingerprintOptions()


def _named(fp: Fingerprint, how: str, path: Path, name: str | None) -> Fingerprint:
    if name is None and how == CACHED:
        # The cache is content-addressed: a copy of a model elsewhere (cp -a, rsync) hits the entry another
        # folder made, whose name is not this one's. The name follows the one rule of `lineage.io.names`.
        name = model_name(path)
    if name is not None and fp.name != name:
        fp = replace(fp, name=name)  # the cache is content-addressed: the same model may sit under another name
    return fp
