"""Hub-like model folders, written atomically, with a marker that makes rebuilds skip finished work.

A folder holds what ``save_pretrained`` writes on the hub -- ``config.json``, ``generation_config.json``,
``model.safetensors`` or shards plus ``model.safetensors.index.json``, and the tokenizer files -- and one
extra file, ``catalog_entry.json``: the recipe entry's hash and what the build measured (losses, merge
weights). The folder is assembled under a temporary name and renamed into place with the marker already
inside, so a folder that exists under its final name is complete: an interrupted build leaves only a
``*.partial`` folder, removed on the next run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lineage.catalog.recipe import size_in_bytes

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

MARKER_NAME = "catalog_entry.json"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' and peft's log messages, deprecation warnings and per-shard progress bars (they
    would interleave with lineage's own progress lines, and a log file would fill with redrawn bars), then
    restore them. The library never prints; these notices are not the caller's concern."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, folder: Path, *, layout: str,
               dtype: str, shard_size: str, marker: dict[str, Any]) -> Path:
    """Write ``model`` and ``tokenizer`` to ``folder`` the way a hub checkpoint is laid out.

    Args:
        model: the model (any dtype); it is cast to ``dtype`` in place (``nn.Module.to``), as saved.
        tokenizer: saved alongside (``tokenizer.json``).
        folder: destination; replaced if it exists.
        layout: ``single`` (one ``model.safetensors``) or ``sharded`` (shards of at most ``shard_size``
            and ``model.safetensors.index.json``).
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        shard_size: e.g. ``"1MB"``; used only when sharded (a third of the model when that is smaller,
            so that a sharded layout always has several files).
        marker: JSON-able facts written to ``catalog_entry.json`` (must hold the entry ``hash``).

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    model = model.to(_DTYPES[dtype])
    model.config.dtype = dtype
    model.save_pretrained(partial, safe_serialization=True, max_shard_size=_max_shard(model, layout, shard_size))
    tokenizer.save_pretrained(partial)
    (partial / MARKER_NAME).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def _max_shard(model: PreTrainedModel, layout: str, shard_size: str) -> int | str:
    if layout == "single":
        return "10GB"  # far above any catalog model: one file
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    # A model smaller than the shard size would come out as one file; split it in about three instead.
    return min(size_in_bytes(shard_size), max(total // 3, 1))



def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a built model folder, or ``None`` if the folder is absent or incomplete."""
    path = Path(folder) / MARKER_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_built(folder: Path, entry_hash: str) -> bool:
    """Whether ``folder`` holds a complete build of the recipe entry with this hash."""
    marker = read_marker(folder)
    return marker is not None and marker.get("hash") == entry_hash


def load_model(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load a catalog model in fp32 (whatever dtype it was saved in) with its tokenizer."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    return model, tokenizer
