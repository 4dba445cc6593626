"""Checkpoints in: find model folders, validate safetensors and GGUF headers, read tensors lazily.

Only this package opens weight files; everything else receives a `Checkpoint` (a `CheckpointReader` for
safetensors, a `lineage.io.gguf_reader.GGUFCheckpoint` for GGUF, which imports gguf-py only when used).
"""

from lineage.io.checkpoint import Checkpoint
from lineage.io.discover import discover_models, is_model_folder
from lineage.io.header import FileHeader, TensorInfo, read_header
from lineage.io.index import ModelFiles, locate_files
from lineage.io.reader import CheckpointReader, open_checkpoint

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
