"""Find the weight files of one model folder and validate its shard index.

The rule follows transformers: `model.safetensors.index.json` when present (its `weight_map` names the
shards), else `model.safetensors`, else every `*.safetensors` in the folder. Only `weight_map` values are
trusted as paths after a check that they stay inside the folder: an index is data from the internet, and
`../../.ssh/id_rsa` must not become a file lineage opens. Pickled weights are named, never loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lineage.errors import CheckpointError, UnsafeCheckpointError
from lineage.io.constants import (
    CONFIG_FILE,
    FINGERPRINT_SUFFIX,
    INDEX_FILE,
    PICKLE_SUFFIXES,
    PYTORCH_BIN,
    SAFETENSORS_SUFFIX,
    SINGLE_FILE,
    TRAINER_PICKLES,
)
from lineage.io.jsonfile import json_problem

_CONVERT_HINT = (
    "convert it to safetensors in a trusted sandbox (e.g. transformers: AutoModelForCausalLM.from_pretrained(dir)"
    ".save_pretrained(out, safe_serialization=True)) and point lineage at the result"
)


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model folder that the reader opens.

    Attributes:
        folder: the model folder.
        files: safetensors files, sorted.
        weight_map: tensor name -> file name relative to `folder`, from the index; None without an index.
        index: the index file, or None.
        config: `config.json`, or None when absent.
    """

    folder: Path
    files: tuple[Path, ...]
    weight_map: dict[str, str] | None
    index: Path | None
    config: Path | None

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("a model needs at least one safetensors file")


def locate_files(path: str | Path) -> ModelFiles:
    """Find the safetensors files of a model folder (or of a single `.safetensors` file).

    Args:
        path: a model folder, or one `.safetensors` file read on its own.

    Returns:
        The `ModelFiles` to open.

    Raises:
        CheckpointError: the path does not exist, holds no weights, or its index is broken or lists a
            missing shard.
        UnsafeCheckpointError: only pickled weights, or an index pointing outside the folder.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file or folder; check the path")
    if path.is_file():
        return _single_file(path)

    folder = path
    config = folder / CONFIG_FILE
    config_path = inside_folder(folder, config) if config.is_file() else None
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = read_index(inside_folder(folder, index), folder)
        files = tuple(sorted({_shard_path(folder, index, rel) for rel in set(weight_map.values())}))  # each name once
        return ModelFiles(folder, files, weight_map, index, config_path)

    single = folder / SINGLE_FILE
    # transformers loads model.safetensors alone when present; stray copies next to it (Mistral's
    # consolidated.safetensors) would otherwise read as duplicate tensors.
    candidates = [single] if single.is_file() else weight_files(folder)
    files = tuple(sorted(inside_folder(folder, p) for p in candidates if p.is_file()))
    if files:
        return ModelFiles(folder, files, None, None, config_path)
    pickles = pickled_weights(folder)
    if pickles:
        raise UnsafeCheckpointError(
            pickles[0], f"refusing to unpickle '{pickles[0].name}' (pickle runs code); {_CONVERT_HINT}"
        )
    if not any(_visible(folder.iterdir())):
        raise CheckpointError(folder, "no model found: the folder is empty; point at a folder holding *.safetensors")
    raise CheckpointError(
        folder,
        f"no model found: no {SINGLE_FILE}, {INDEX_FILE} or *{SAFETENSORS_SUFFIX} in the folder; "
        "point at a model folder",
    )


def read_index(index: Path, folder: Path) -> dict[str, str]:
    """Read and validate `model.safetensors.index.json`.

    Args:
        index: the index file.
        folder: the model folder its shards must stay inside.

    Returns:
        The `weight_map`: tensor name -> shard file name relative to `folder`.

    Raises:
        CheckpointError: not JSON, no `weight_map` object, or entries that are not strings.
        UnsafeCheckpointError: a shard path that is absolute or leaves the folder.
    """
    try:
        parsed: Any = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(index, f"index is not valid JSON ({json_problem(exc)}); re-download it") from None
    weight_map = parsed.get("weight_map") if isinstance(parsed, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(
            index,
            "index has no 'weight_map' object; re-download it or delete it to use the "
            f"*{SAFETENSORS_SUFFIX} files directly",
        )
    if not weight_map:
        raise CheckpointError(index, "index 'weight_map' lists no tensors; re-download it")
    for name, rel in weight_map.items():
        if not isinstance(rel, str) or not rel:
            raise CheckpointError(index, f"index 'weight_map' entry for tensor '{name}' is not a file name: {rel!r}")
        pure = PurePosixPath(rel.replace("\\", "/"))
        if pure.is_absolute() or Path(rel).is_absolute() or ".." in pure.parts:
            raise UnsafeCheckpointError(
                index,
                f"index 'weight_map' puts tensor '{name}' in '{rel}', outside the model folder; refusing "
                "to read it (the index is corrupt or malicious)",
            )
    return dict(weight_map)


def weight_files(folder: Path) -> list[Path]:
    """The visible `*.safetensors` files of a folder that are weights (lineage's fingerprint files are not)."""
    return [p for p in _visible(folder.glob(f"*{SAFETENSORS_SUFFIX}")) if not p.name.endswith(FINGERPRINT_SUFFIX)]


def pickled_weights(folder: Path) -> list[Path]:
    """List the pickled weight files of a folder (never opened), `pytorch_model*.bin` first.

    Args:
        folder: a folder.

    Returns:
        The files with a pickle suffix, except the Trainer's own pickles, sorted.
    """
    found = [
        p
        for p in _visible(folder.iterdir())
        if p.suffix in PICKLE_SUFFIXES and p.name not in TRAINER_PICKLES and p.is_file()
    ]
    return sorted(found, key=lambda p: (not p.name.startswith(PYTORCH_BIN.removesuffix(".bin")), p.name))


def _single_file(path: Path) -> ModelFiles:
    if path.suffix in PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(path, f"refusing to unpickle '{path.name}' (pickle runs code); {_CONVERT_HINT}")
    if path.name == INDEX_FILE:
        return locate_files(path.parent)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(path, f"not a model folder nor a *{SAFETENSORS_SUFFIX} file; point at a model folder")
    config = path.parent / CONFIG_FILE
    config_path = inside_folder(path.parent, config) if config.is_file() else None
    return ModelFiles(path.parent, (path,), None, None, config_path)


def _shard_path(folder: Path, index: Path, rel: str) -> Path:
    shard = folder / rel
    if not shard.is_file():
        raise CheckpointError(
            index,
            f"index 'weight_map' lists shard '{rel}', which is missing from the folder; the download is "
            "incomplete: re-download it",
        )
    return inside_folder(folder, shard)


def inside_folder(folder: Path, path: Path) -> Path:
    """Return `path` if it resolves inside `folder`, else raise `UnsafeCheckpointError`.

    A symlink into the Hugging Face cache's `blobs/` folder is allowed: that cache stores every file of
    `<repo>/snapshots/<rev>/` as a link to `<repo>/blobs/<sha>`, and refusing it would refuse every
    model downloaded with `huggingface_hub`.
    """
    root = folder.resolve()
    target = path.resolve()
    if target.is_relative_to(root):
        return path
    if root.parent.name == "snapshots" and target.is_relative_to(root.parent.parent / "blobs"):
        return path
    raise UnsafeCheckpointError(
        path,
        f"resolves to '{target}', outside the model folder '{folder}'; refusing to read it (replace the "
        "link with the file itself)",
    )


def _visible(paths: Any) -> list[Path]:
    # Skip dot-files: macOS '._model.safetensors' resource forks are not safetensors.
    return [p for p in paths if not p.name.startswith(".")]
