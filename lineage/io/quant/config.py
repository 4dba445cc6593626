"""`quantization_config` of a Hugging Face `config.json`, parsed into one frozen dataclass.

Every quantiser writes the same block (`quant_method` plus its own keys); the readers of each format need a
handful of them. The keys are spelt as transformers' quantisation configs spell them (`GPTQConfig`,
`AwqConfig`, `FineGrainedFP8Config`, `BitsAndBytesConfig`, compressed-tensors' `QuantizationConfig`); a key of
the wrong kind is a `ValueError`, turned into a one-line `CheckpointError` naming config.json by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: `quant_method` values lineage reads, with the format name its messages use.
METHODS = {
    "fp8": "FP8",
    "gptq": "GPTQ",
    "awq": "AWQ",
    "compressed-tensors": "compressed-tensors",
    "bitsandbytes": "bitsandbytes",
    "mxfp4": "MXFP4",
}


@dataclass(frozen=True)
class QuantConfig:
    """What `config.json`'s `quantization_config` says about the stored weights.

    Attributes:
        method: `quant_method` (`fp8`, `gptq`, `awq`, `compressed-tensors`, `bitsandbytes`, or another).
        bits: bits per weight (GPTQ, AWQ; compressed-tensors' `num_bits`), None when not given.
        group_size: inputs per scale (-1: one group per row), None when not given.
        checkpoint_format: GPTQ's `checkpoint_format` (`gptq` stores zero points minus one, `gptq_v2` not).
        version: AWQ's packing (`gemm`, `gemv`, ...).
        weight_block_size: FP8 block shape `(rows, columns)`, None for one scale per tensor.
        format: compressed-tensors' `format` (`pack-quantized`, `float-quantized`, `naive-quantized`...).
        weights: compressed-tensors' weight arguments of its one config group (`num_bits`, `type`,
            `symmetric`, `strategy`, `group_size`, `block_structure`), {} otherwise.
        groups: how many compressed-tensors config groups there are.
        bnb_4bit: bitsandbytes `load_in_4bit`; `bnb_8bit`: `load_in_8bit`.
        bnb_quant_type: bitsandbytes `bnb_4bit_quant_type` (`nf4`, `fp4`), None when not given.
    """

    method: str
    bits: int | None = None
    group_size: int | None = None
    checkpoint_format: str = "gptq"
    version: str = "gemm"
    weight_block_size: tuple[int, int] | None = None
    format: str | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    groups: int = 0
    bnb_4bit: bool = False
    bnb_8bit: bool = False
    bnb_quant_type: str | None = None

    def __post_init__(self) -> None:
        if self.bits is not None and self.bits <= 0:
            raise ValueError(f"bits must be positive, got {self.bits}")
        if self.group_size is not None and (self.group_size == 0 or self.group_size < -1):
            raise ValueError(f"group_size must be positive or -1, got {self.group_size}")
        if self.weight_block_size is not None and min(self.weight_block_size) <= 0:
            raise ValueError(f"weight_block_size must be positive, got {list(self.weight_block_size)}")

    @property
    def label(self) -> str:
        """The format's name in messages (`GPTQ`, `AWQ`...), the method itself when lineage does not read it."""
        return METHODS.get(self.method, self.method)


def parse_quant_config(config: dict[str, Any]) -> QuantConfig | None:
    """The `quantization_config` of a parsed `config.json`, None when it has none.

    Raises:
        ValueError: the block is not an object, or a key lineage reads has the wrong kind of value.
    """
    raw = config.get("quantization_config")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"quantization_config is a JSON {type(raw).__name__}, not an object")
    method = raw.get("quant_method")
    if not isinstance(method, str):
        raise ValueError(f"quantization_config.quant_method must be a string, got {method!r}")
    method = method.lower()
    groups = raw.get("config_groups") or {}
    if not isinstance(groups, dict):
        raise ValueError("quantization_config.config_groups must be an object")
    weights: dict[str, Any] = {}
    if len(groups) == 1:
        (group,) = groups.values()
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict):
            raise ValueError("quantization_config.config_groups' group has no 'weights' object")
    block = raw.get("weight_block_size")
    if block is not None and not (isinstance(block, list) and len(block) == 2 and all(_is_int(b) for b in block)):
        raise ValueError(f"quantization_config.weight_block_size must be two integers, got {block!r}")
    return QuantConfig(
        method=method,
        bits=_int(raw, "bits"),
        group_size=_int(raw, "group_size"),
        checkpoint_format=_str(raw, "checkpoint_format", "gptq"),
        version=_str(raw, "version", "gemm").lower(),
        weight_block_size=tuple(block) if block is not None else None,
        format=raw.get("format") if isinstance(raw.get("format"), str) else None,
        weights=dict(weights),
        groups=len(groups),
        bnb_4bit=raw.get("load_in_4bit") is True,
        bnb_8bit=raw.get("load_in_8bit") is True,
        bnb_quant_type=raw.get("bnb_4bit_quant_type") if isinstance(raw.get("bnb_4bit_quant_type"), str) else None,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is not None and not _is_int(value):
        raise ValueError(f"quantization_config.{key} must be an integer, got {value!r}")
    return value


def _str(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"quantization_config.{key} must be a string, got {value!r}")
    return value
