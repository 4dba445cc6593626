"""The `LineageError` hierarchy.

The library raises only these (plus `ValueError` for invalid option objects); the CLI maps each to one
line on stderr and exit code 1. Messages say what went wrong, where (the file), and what to do.
"""

from __future__ import annotations

from pathlib import Path


class LineageError(Exception):
    """Base class of every error the library raises on purpose."""


class FileError(LineageError):
    """An error about one file: the message is `<path>: <problem>`.

    Args:
        path: the file (or folder) at fault.
        problem: what is wrong, and where useful what to do about it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{shown_path(self.path)}: {problem}")


def shown_path(path: str | Path) -> str:
    """`path` as one printable line: a newline, a control character or a byte that is not UTF-8 in a file
    name is written as its escape (`two\\nlines`, `caf\\udce9`), so that an error stays one line and prints
    on any terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


class CheckpointError(FileError):
    """A model folder or one of its files cannot be used (corrupt, truncated, unsafe, missing...)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint would need unpickling or escapes its folder: refused, never loaded."""


class NonFiniteWeightsError(CheckpointError):
    """A tensor holds NaN or Inf values: the fingerprint would be garbage."""


class UnsupportedArchitectureError(LineageError):
    """The tensors do not match any architecture lineage knows how to probe."""


class FingerprintFormatError(FileError):
    """A fingerprint file is unreadable, of another schema version, or not a fingerprint."""


class ManifestError(LineageError):
    """A manifest CSV is missing columns, has bad rows, or points at missing files."""


class ClassificationError(LineageError):
    """Fingerprints cannot be compared or classified (no references, incompatible methods...)."""


class CatalogError(LineageError):
    """The reference catalog cannot be built (bad recipe, missing optional dependency...)."""


class DeviceError(LineageError):
    """The requested compute device is not available."""


class ExecutorError(LineageError):
    """Fingerprinting cannot be spread as asked (Ray not installed, cluster unreachable, workers cannot start)."""


class PackError(LineageError):
    """A reference pack cannot be built or read (a reference failed, a file is missing or altered...)."""


class HubError(LineageError):
    """A model hub path (`hf://org/name[@revision]`) cannot be resolved or fetched."""


class StoreError(LineageError):
    """A fingerprint store file is unreadable, of another format, or cannot be built."""


class MissingDependencyError(LineageError):
    """An optional dependency a feature needs is not installed; the message says which extra to install."""


class CacheError(FileError):
    """The fingerprint cache folder cannot be used (a file stands where it should be)."""


class OutputError(FileError):
    """An output path (`--out`) cannot be written, or would overwrite what it must not."""


class LineageWarning(UserWarning):
    """Something the user must hear of that does not stop the work (a damaged cache entry fingerprinted
    again, a pack used without its check): the CLI prints each as one `warning:` line on stderr."""
