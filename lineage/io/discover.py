"""Turn a path given on the command line into the list of model folders to process.

A model folder is one path; a folder of model folders is a batch. One more level is followed so that an
`org/name` tree (as `huggingface-cli download --local-dir models/org/name` leaves it) works too; deeper
trees are not searched, because a recursive walk over a disk of checkpoints is slow and surprising.
Folders that only hold pickled weights count as models, so that the reader refuses them by name with a
conversion hint instead of them vanishing from the batch. A `.gguf` file is a model; a folder holding one
GGUF model (a file or a split set) is a model folder, and a folder holding several (a quantiser's Q4_K_M,
Q8_0, ... side by side) is a batch of its files.
"""

from __future__ import annotations

from pathlib import Path

from lineage.errors import CheckpointError
from lineage.io.constants import GGUF_SUFFIX, INDEX_FILE, PICKLE_SUFFIXES, SAFETENSORS_SUFFIX
from lineage.io.gguf_files import gguf_models
from lineage.io.index import pickled_weights, weight_files


def is_model_folder(path: Path) -> bool:
    """Tell whether a folder holds model weights (safetensors, an index, one GGUF model, or pickled weights).

    Args:
        path: a path.

    Returns:
        True for a folder holding `*.safetensors`, `model.safetensors.index.json`, exactly one GGUF model
        (one `.gguf` file or one split set) and no sub-folder with weights, or only pickled weights (`*.bin`,
        `*.pt`, `*.pth`, `*.ckpt`, the Trainer's own pickles aside).
    """
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / INDEX_FILE).is_file():
        return True
    if any(p.is_file() for p in weight_files(path)):
        return True
    ggufs = gguf_models(path)
    if ggufs:
        # One GGUF beside model sub-folders is a batch member like them, not the folder's own model.
        return len(ggufs) == 1 and not any(_holds_weights(child) for child in _subfolders(path))
    return bool(pickled_weights(path))


def discover_models(path: str | Path) -> list[Path]:
    """List the model folders under a path.

    Args:
        path: a model folder, a `.safetensors`, `.gguf` (or pickled) file, or a folder of model folders.

    Returns:
        `[path]` for a model folder or a weights file; else the models below, sorted by path: sub-folders
        that are models, and the files of folders holding several GGUF models, looking one level down and,
        under sub-folders that are not models, one more.

    Raises:
        CheckpointError: the path does not exist, or holds no model.

    Example:
        >>> discover_models("models")  # models/llama-7b, models/qwen/qwen2-7b
        [PosixPath('models/llama-7b'), PosixPath('models/qwen/qwen2-7b')]
    """
    path = Path(path)
    try:
        return _discover(path)
    except OSError as exc:  # a name too long, a loop of links, a folder that cannot be listed
        raise CheckpointError(path, f"cannot read it ({exc.strerror or exc}); check the path") from None


def check_model_path(path: Path) -> None:
    """Refuse a path that is neither a file nor a folder, or does not exist, in one line.

    Raises:
        CheckpointError: no such path, or a pipe, device or socket (reading one could block or never end).
        OSError: the path cannot be looked at (the callers turn it into their one-line error).
    """
    if not path.exists():
        raise CheckpointError(path, "no such file or folder; check the path")
    if not path.is_file() and not path.is_dir():
        raise CheckpointError(
            path, "not a regular file or folder (a pipe, a device or a socket); point at a model folder or file"
        )


def _discover(path: Path) -> list[Path]:
    check_model_path(path)
    if path.is_file():
        if path.suffix in (SAFETENSORS_SUFFIX, GGUF_SUFFIX, *PICKLE_SUFFIXES) or path.name == INDEX_FILE:
            return [path]
        raise CheckpointError(path, "no model found: not a model folder nor a weights file")
    if is_model_folder(path):
        return [path]

    found: list[Path] = gguf_models(path)  # not a model folder: zero, or several GGUF models
    for child in _subfolders(path):
        if is_model_folder(child):
            found.append(child)
        else:
            found.extend(gguf_models(child))
            for grandchild in _subfolders(child):
                found.extend([grandchild] if is_model_folder(grandchild) else gguf_models(grandchild))
    if found:
        return sorted(found)
    if not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise CheckpointError(path, "no model found: the folder is empty; point at a model folder or a folder of them")
    raise CheckpointError(
        path,
        f"no model found: neither the folder nor its sub-folders hold *{SAFETENSORS_SUFFIX}, {INDEX_FILE} "
        f"or *{GGUF_SUFFIX}; "
        "point at a model folder or a folder of them",
    )


def _holds_weights(folder: Path) -> bool:
    """Whether a folder holds weight files of its own (no look further down)."""
    if (folder / INDEX_FILE).is_file() or gguf_models(folder):
        return True
    return any(p.is_file() for p in weight_files(folder)) or bool(pickled_weights(folder))


def _subfolders(path: Path) -> list[Path]:
    # Hidden folders (.cache, .git) never hold models worth fingerprinting.
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
