"""Checkpoints in: find model folders, validate safetensors headers, read tensors lazily.

Only this package opens weight files; everything else receives a `CheckpointReader`.
"""

from lineage.io.discover import discover_models, is_model_folder
from lineage.io.header import FileHeader, TensorInfo, read_header
from lineage.io.index import ModelFiles, locate_files
from lineage.io.reader import CheckpointReader, open_checkpoint

__all__ = [
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
