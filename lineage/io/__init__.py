"""Checkpoints in: find model folders, validate safetensors and GGUF headers, read tensors lazily.

Only this package opens weight files; everything else receives a `Checkpoint` from `open_checkpoint`
(`lineage.io.open`): a `CheckpointReader` for safetensors, a `lineage.io.gguf_reader.GGUFCheckpoint` for
GGUF (gguf-py imported only when used), an `AdapterReader` for a PEFT adapter, a `HubCheckpoint` for
`hf://` models.

The names below are imported on first use (PEP 562): the readers import torch, and a command that only
reads file names (`lineage.io.constants`, `lineage.io.names`) or prints `--version` must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lineage.io.checkpoint import Checkpoint
    from lineage.io.discover import discover_models, is_model_folder
    from lineage.io.header import FileHeader, TensorInfo, read_header
    from lineage.io.index import ModelFiles, locate_files
    from lineage.io.open import open_checkpoint
    from lineage.io.reader import CheckpointReader

_EXPORTS: dict[str, str] = {
    "Checkpoint": "lineage.io.checkpoint",
    "CheckpointReader": "lineage.io.reader",
    "FileHeader": "lineage.io.header",
    "ModelFiles": "lineage.io.index",
    "TensorInfo": "lineage.io.header",
    "discover_models": "lineage.io.discover",
    "is_model_folder": "lineage.io.discover",
    "locate_files": "lineage.io.index",
    "open_checkpoint": "lineage.io.open",
    "read_header": "lineage.io.header",
}

__all__ = [
    "Checkpoint",
    "CheckpointReader",
    "FileHeader",
    "ModelFiles",
    "TensorInfo",
    "discover_models",
    "is_model_folder",
    "locate_files",
    "open_checkpoint",
    "read_header",
]


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lineage.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
