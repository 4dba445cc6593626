"""Checks of a checkpoint's config and tensor headers, against each other, while its layout is resolved.

Everything here reads names, dtypes, shapes and config values only (no tensor data), and fails with one line
naming the file and the problem before a single product runs: a wrong rank would otherwise surface as an
`IndexError` deep in a matrix product, a negative `rms_norm_eps` as NaN responses blamed on a weight, an
integer tensor as a fingerprint of bit patterns. The config is optional (its sizes are read off the tensors
when absent), but a config that is there must agree with the tensors: an edited config is either corruption
or a disguise, and either way the numbers lineage reports would not describe the weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

from lineage.arch.spec import ARCHITECTURES, FOREIGN_MODEL_TYPES, ArchSpec
from lineage.errors import CheckpointError

#: Stored dtypes that hold integers or booleans (safetensors names; GGUF's integer types are among them).
INTEGER_DTYPES: frozenset[str] = frozenset({"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64"})
#: The roles whose tensors are matrices; every other role of a layer is a vector (a gain or a bias).
MATRIX_ROLES: frozenset[str] = frozenset(
    {"q", "k", "v", "qkv", "qkv_interleaved", "o", "gate", "up", "gate_up", "down", "router", "shared_router",
     "q_a", "q_b", "kv_a", "kv_b"}
)
_LAYOUT_OF_TYPE: dict[str, str] = {t: spec.name for spec in ARCHITECTURES for t in spec.config_types}


def model_location(reader: Any) -> Path:
    """What a message about the whole model names: the GGUF file (the first of a split set), else the folder."""
    files = getattr(reader, "files", ())
    if files and Path(files[0]).suffix == ".gguf":
        return Path(files[0])
    return Path(getattr(reader, "folder", Path(".")))


def config_source(reader: Any) -> tuple[Path, str]:
    """Where `reader.config` came from and what to call it in a message: `(path, "config.json")`, or the first
    GGUF file and "the GGUF metadata" (its config is synthesised from the metadata)."""
    where = model_location(reader)
    if where.suffix == ".gguf":
        return where, "the GGUF metadata"
    return (where / "config.json" if (where / "config.json").is_file() else where), "config.json"


def contradiction(reader: Any, config_says: str, tensors_say: str) -> NoReturn:
    """Refuse a config that contradicts the tensors, with both facts."""
    where, what = config_source(reader)
    fix = "re-convert the model" if what != "config.json" else "restore the config that came with them"
    raise CheckpointError(
        where, f"{what} says {config_says}, but {tensors_say}: the config contradicts the weights; {fix}"
    )


def _bad_value(reader: Any, key: str, value: object, wanted: str) -> NoReturn:
    where, what = config_source(reader)
    raise CheckpointError(
        where, f"{what} gives {key} {value!r} ({type(value).__name__}), not {wanted}: the config is corrupt; "
        "fix the value or delete the key to read it off the tensors",
    )  # fmt: skip


def text_config(reader: Any) -> dict:
    """The language model's settings: `text_config` merged over the top level (Gemma 3 4B+, LLaVA...).

    Raises:
        CheckpointError: `text_config` or a `model_type` of the wrong JSON type.
    """
    config = reader.config or {}
    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        _bad_value(reader, "text_config", text, "an object")
    for scope in (config, text or {}):
        if scope.get("model_type") is not None and not isinstance(scope["model_type"], str):
            _bad_value(reader, "model_type", scope["model_type"], "a string")
    return {**config, **text} if text else config


def config_int(reader: Any, config: dict, key: str) -> int | None:
    """`config[key]` as a positive integer, None when absent or null.

    Raises:
        CheckpointError: the value is there but not a positive integer (0, -4, 4.5, "8", true).
    """
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        _bad_value(reader, key, value, "a positive integer")
    return value


def config_eps(reader: Any, config: dict, default: float = 1e-6) -> float:
    """The norms' epsilon (`rms_norm_eps`, else `layer_norm_eps`, else `default`), checked positive and finite:
    a negative one makes NaN of every normalised probe, which would be blamed on the first weight it meets."""
    found = None
    for key in ("rms_norm_eps", "layer_norm_eps"):
        value = config.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= 0:
            _bad_value(reader, key, value, "a positive finite number")
        found = float(value) if found is None else found
    return default if found is None else found


def check_sizes(reader: Any, embed: str, hidden: int, vocab: int, layers: int) -> None:
    """`hidden_size`, `vocab_size` and `num_hidden_layers` of the config, where given, against the tensors.

    A multimodal config's sizes are read from its `text_config` alone: its top level may describe another
    tower. The head may have another row count than the embedding (padded or trimmed vocabularies are
    legitimate); `vocab_size` is checked against the embedding only.
    """
    config = reader.config or {}
    scope = config["text_config"] if isinstance(config.get("text_config"), dict) else config
    facts = (
        ("hidden_size", hidden, f"the embedding '{embed}' is {hidden} wide"),
        ("vocab_size", vocab, f"the embedding '{embed}' has {vocab} rows"),
        ("num_hidden_layers", layers, f"the tensors hold {layers} layers"),
    )
    for key, actual, tensors_say in facts:
        value = config_int(reader, scope, key)
        if value is not None and value != actual:
            contradiction(reader, f"{key} {value}", tensors_say)


def check_model_type(reader: Any, spec: ArchSpec, model_type: str | None) -> None:
    """Refuse a `model_type` that names an architecture whose tensors are not laid out as `spec`; a name lineage
    does not know is accepted (it only labels the fingerprint: the weights choose the layout)."""
    if model_type is None:
        return
    layout = _LAYOUT_OF_TYPE.get(model_type)
    if (layout is not None and layout != spec.name) or model_type in FOREIGN_MODEL_TYPES:
        contradiction(reader, f"model_type '{model_type}'", f"the tensors are laid out as {spec.name}")


def check_dtypes(reader: Any, names: list[str]) -> None:
    """Every tensor probed must hold floating-point numbers: an integer or boolean tensor is no weight."""
    for name in names:
        info = reader.info(name)
        if info.dtype in INTEGER_DTYPES:
            raise CheckpointError(
                _file(reader, info),
                f"tensor '{name}' holds {'booleans' if info.dtype == 'BOOL' else 'integers'} ({info.dtype}), not "
                "weights to probe: the checkpoint is corrupt "
                "or quantised in a format lineage does not read; export it in BF16, F16 or F32",
            )


def check_rank(reader: Any, name: str, rank: int) -> None:
    """Refuse a tensor whose number of dimensions is not `rank` (2 for a matrix, 1 for a gain or bias)."""
    info = reader.info(name)
    if len(info.shape) != rank:
        kind = "a matrix (2-D)" if rank == 2 else "a vector (1-D)"
        raise CheckpointError(
            _file(reader, info),
            f"tensor '{name}' has shape {list(info.shape)}, but it must be {kind}: the checkpoint is corrupt "
            "or mixes two models",
        )


def check_shape(reader: Any, name: str | None, shape: tuple[int | None, ...], hidden: int) -> None:
    """Refuse a tensor whose shape is not `shape` (a None entry matches any size)."""
    if name is None:
        return
    info = reader.info(name)
    got = tuple(int(x) for x in info.shape)
    if len(got) != len(shape) or any(want is not None and g != want for g, want in zip(got, shape, strict=False)):
        expected = [("any" if s is None else s) for s in shape]
        raise CheckpointError(
            _file(reader, info),
            f"tensor '{name}' has shape {list(info.shape)}, expected {expected} for hidden size {hidden}: "
            "the checkpoint is corrupt or mixes two models",
        )


def _file(reader: Any, info: Any) -> Path:
    # `Checkpoint.file_of` knows an adapter's files apart from its base's; a bare test double has only a folder.
    file_of = getattr(reader, "file_of", None)
    return Path(file_of(info.name)) if file_of is not None else Path(getattr(reader, "folder", Path("."))) / info.file
