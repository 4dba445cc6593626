"""Where a PEFT adapter finds its base model: the one rule, and the run's settings it reads.

In order: the base given for the whole run (`--base PATH`); a reference whose `hub_id` is the adapter's
`base_model_name_or_path` (`lineage.refs.manifest.Manifest.adapter_bases`); that field itself when it is
an existing local folder. The first two are set by the job for the whole run with `adapter_bases(...)`:
the adapter is opened deep inside the fingerprint pipeline and its cache, and a context variable reaches it
there without threading a base through every signature on the way. A worker process does not inherit a
context variable, so the executors send `current_adapter_bases()` with each task. Without a base the
adapter is refused in one line that says how to give one.

Nothing here imports torch: the rule is read by drivers that never open a weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from lineage.errors import CheckpointError
from lineage.io.constants import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lineage.io.declared import normalize_hub_id


@dataclass(frozen=True)
class AdapterBases:
    """Where adapters find their bases during one run.

    Attributes:
        default: the base given with `--base`, used for every adapter.
        by_hub_id: normalised hub id -> model path, from the references' `hub_id` column.
    """

    default: Path | None = None
    by_hub_id: Mapping[str, Path] = field(default_factory=dict)


_BASES: ContextVar[AdapterBases] = ContextVar("lineage_adapter_bases", default=AdapterBases())


@contextmanager
def adapter_bases(
    default: str | Path | None = None, by_hub_id: Mapping[str, str | Path] | None = None
) -> Iterator[None]:
    """Set where adapters opened inside the `with` block find their base.

    Args:
        default: the base model path for every adapter (`--base`).
        by_hub_id: hub id -> model path (ids are normalised: case, hub URL and `@revision` ignored).

    Example:
        >>> with adapter_bases("models/llama-8b"):  # doctest: +SKIP
        ...     fp = fingerprint_model("adapters/my-lora")
    """
    bases = AdapterBases(
        Path(default) if default is not None else None,
        {normalize_hub_id(str(k)): Path(v) for k, v in (by_hub_id or {}).items()},
    )
    token = _BASES.set(bases)
    try:
        yield
    finally:
        _BASES.reset(token)


def current_adapter_bases() -> AdapterBases:
    """The bases set by the innermost `adapter_bases` block (none set: an empty `AdapterBases`)."""
    return _BASES.get()


def is_adapter_folder(path: str | Path) -> bool:
    """Whether `path` is a PEFT adapter folder (`adapter_config.json` next to `adapter_model.safetensors`)."""
    path = Path(path)
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file() and (path / ADAPTER_WEIGHTS).is_file()


def find_base(folder: Path, declared: str | None) -> Path:
    """The base model folder of the adapter in `folder`, whose config declares `declared` as its base.

    Raises:
        CheckpointError: none found (the message says to give --base).
    """
    bases = _BASES.get()
    if bases.default is not None:
        return bases.default
    if declared:
        hit = bases.by_hub_id.get(normalize_hub_id(declared))
        if hit is not None:
            return hit
        local = Path(declared).expanduser()
        if local.is_absolute() and local.is_dir() and not is_adapter_folder(local):
            return local
    named = f"'{declared}', which is not among the references' hub_id" if declared else "no base"
    raise CheckpointError(folder, f"a LoRA adapter of {named}: give its base model with --base PATH")
