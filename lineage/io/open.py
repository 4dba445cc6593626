"""Opening a checkpoint: the one door through which lineage reads model weights, whatever their format.

`open_checkpoint` picks the reader by what the path is, and every reader is a `lineage.io.checkpoint.
Checkpoint`: a PEFT adapter folder is read as the model it makes (`AdapterReader` over its base, found by
`lineage.io.adapter_base.find_base`), an `hf://org/name[@revision]` path (or a resolved `HubModel`) is
fetched and read as the folder it becomes (`HubCheckpoint`), a `.gguf` file or a folder holding only a GGUF
model is read by `GGUFCheckpoint`, anything else by the safetensors `CheckpointReader`. Opening reads only
headers and configs; gguf-py and huggingface_hub are imported only when a GGUF or a hub model is opened.
"""

from __future__ import annotations

from pathlib import Path

from lineage.errors import CheckpointError
from lineage.io.adapter import AdapterReader, read_lora_settings
from lineage.io.adapter_base import find_base, is_adapter_folder
from lineage.io.checkpoint import Checkpoint
from lineage.io.constants import ADAPTER_CONFIG, ADAPTER_WEIGHTS, GGUF_SUFFIX, INDEX_FILE
from lineage.io.discover import check_model_path
from lineage.io.gguf_files import gguf_models
from lineage.io.hub import HubModel, is_hub_path
from lineage.io.index import inside_folder, weight_files
from lineage.io.reader import CheckpointReader


def open_checkpoint(path: str | Path | HubModel) -> Checkpoint:
    """Open a checkpoint for lazy reading; reads only headers and `config.json` (or the GGUF metadata).

    Args:
        path: a model folder, one `.safetensors` file, a `.gguf` file (or any split of a set), a folder
            holding one GGUF model and no safetensors, a PEFT adapter folder, or a hub model
            (`hf://org/name[@revision]`, or a `HubModel` already resolved to its commit).

    Returns:
        The reader, to use as a context manager.

    Raises:
        CheckpointError: the checkpoint cannot be used (see each reader). HubError: a hub model cannot be
            resolved or fetched.

    Example:
        >>> with open_checkpoint("models/tiny-llama") as ckpt:
        ...     print(ckpt.num_parameters, ckpt.dtypes)
    """
    if isinstance(path, HubModel) or is_hub_path(path):
        from lineage.io.hub_checkpoint import HubCheckpoint

        return HubCheckpoint(path)
    try:
        check_model_path(Path(path))
    except OSError as exc:  # a name too long, a loop of links
        raise CheckpointError(path, f"cannot read it ({exc.strerror or exc}); check the path") from None
    if is_adapter_folder(path):
        return open_adapter(path)
    if _is_gguf(Path(path)):
        from lineage.io.gguf_reader import GGUFCheckpoint  # gguf-py is imported only when a GGUF is read

        return GGUFCheckpoint(path)
    return CheckpointReader(path)


def open_adapter(path: str | Path, base: str | Path | None = None) -> AdapterReader:
    """Open a LoRA adapter folder as the model it makes: its base (of any format) plus the merged delta.

    Args:
        path: the adapter folder.
        base: the base model; found by `lineage.io.adapter_base.find_base` when None.

    Raises:
        CheckpointError: no base, a base that is itself an adapter, a refused adapter kind, or a LoRA
            tensor that fits no base tensor.
    """
    folder = Path(path)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        inside_folder(folder, folder / name)  # a link out of the adapter folder is refused, like a shard's
    settings = read_lora_settings(folder / ADAPTER_CONFIG)
    base_path = Path(base) if base is not None else find_base(folder, settings.base)
    if is_adapter_folder(base_path):
        raise CheckpointError(base_path, "the base of an adapter is itself an adapter: give the merged base model")
    return AdapterReader(folder, open_checkpoint(base_path), settings)


def _is_gguf(path: Path) -> bool:
    if path.is_file():
        return path.suffix == GGUF_SUFFIX
    # A Hugging Face folder with a GGUF export beside its safetensors is read as the Hugging Face model.
    has_safetensors = (path / INDEX_FILE).is_file() or any(p.is_file() for p in weight_files(path))
    return path.is_dir() and not has_safetensors and bool(gguf_models(path))
