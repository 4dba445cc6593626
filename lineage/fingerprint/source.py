"""Where a job's fingerprints come from: the probe settings for model folders, the cache, and the executor.

Every job over models (scan, classify, packs, the store's references, evaluations) obtains its fingerprints
the same way: fingerprint files are loaded, model folders are fingerprinted with one set of probe settings
(or found in the content-addressed cache), on the executor asked for. `FingerprintSource` is that choice
as one frozen object, so a job passes it down instead of its own options; how fingerprints are then
compared and classified is the classifier's business (`lineage.decide.kmeans.FamilyClassifier`).

Example:
    >>> source = FingerprintSource(device="cpu", use_cache=False)
    >>> source.cache() is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.fingerprint.cache import FingerprintCache
from lineage.fingerprint.executors import ExecutorOptions, gather
from lineage.fingerprint.gather import ModelOutcome

if TYPE_CHECKING:
    from lineage.fingerprint.pipeline import FingerprintOptions

#: `progress(done, total, model_name)`, called after each model is fingerprinted or loaded.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FingerprintSource:
    """How fingerprints are obtained.

    Attributes:
        device: where probes run for model folders ("auto", "cpu", "cuda", "cuda:N").
        fingerprint: probe settings for model folders; defaults on `device` and `key` when None.
        cache_dir: the fingerprint cache folder; the default one when None.
        use_cache: False fingerprints every folder again and stores nothing.
        executor: where model folders are fingerprinted (serial, local processes, a Ray cluster).
        key: the probe key of model folders (`FingerprintOptions.key`); None is the public key.
        verify_weights: key the cache by the sha256 of the weight bytes (`FingerprintCache`).
    """

    device: str = "auto"
    fingerprint: FingerprintOptions | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    key: str | None = field(default=None, repr=False)
    verify_weights: bool = False

    def probe_options(self) -> FingerprintOptions:
        """The probe settings for model folders (imports the probing stack: only called for folders)."""
        if self.fingerprint is not None:
            return self.fingerprint
        from lineage.fingerprint.pipeline import FingerprintOptions

        return FingerprintOptions(device=self.device, key=self.key)

    def cache(self) -> FingerprintCache | None:
        """The fingerprint cache, None when `use_cache` is off."""
        return FingerprintCache(self.cache_dir, verify_weights=self.verify_weights) if self.use_cache else None

    def gather(
        self, items: Sequence[tuple[str | None, Path, object]], progress: Progress | None = None
    ) -> list[ModelOutcome]:
        """One outcome per `(name or None, path, key)` item, in order, on the executor (a failure is an
        outcome, never an exception: see `lineage.fingerprint.executors.gather`)."""
        return gather(items, self.probe_options, self.cache(), progress, self.executor)
