"""PEFT LoRA adapters read as the model they make: base weights plus the merged low-rank delta.

An adapter folder (`adapter_config.json` + `adapter_model.safetensors`) holds no model, only
`lora_A` (r x in) and `lora_B` (out x r) per target module; the model it makes has
`W' = W + s * B @ A` with `s = alpha / r` (`alpha / sqrt(r)` with rsLoRA, Kalajdzievski 2023), per-module
`r` and `alpha` from `rank_pattern` / `alpha_pattern`, transposed for `fan_in_fan_out` (GPT-2's Conv1D),
as PEFT's own `merge_and_unload` computes it (huggingface/peft, `tuners/lora/layer.py`). `AdapterReader`
is a `Checkpoint` over the base's reader (of any format): the base's tensor table, with the delta added in
`tensor`, `row_blocks` and `rows`, block by block, so an adapter over a 70B base streams as the base does.
Full tensors the adapter stores (`modules_to_save`, embedding layers saved whole) replace the base's.

Where the base is found is `lineage.io.adapter_base`'s rule; `lineage.io.open.open_adapter` applies it
and opens the base. DoRA, LoRA biases, trainable tokens and layer replication change the merge and are
refused by name.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lineage.arch.checks import INTEGER_DTYPES
from lineage.errors import CheckpointError, NonFiniteWeightsError
from lineage.io.checkpoint import Checkpoint
from lineage.io.constants import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lineage.io.jsonfile import read_json_object
from lineage.io.reader import CheckpointReader
from lineage.io.vocab import Vocabulary, find_vocabulary

_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)$")
_REFUSED_KEYS = {
    "lora_magnitude_vector": "DoRA (use_dora) adapters",
    "lora_B.bias": "LoRA biases (lora_bias)",
    "trainable_tokens": "trainable-token adapters",
}


@dataclass(frozen=True)
class LoraSettings:
    """The parts of `adapter_config.json` that fix the merge."""

    base: str | None
    r: int
    alpha: float
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: Mapping[str, int] = field(default_factory=dict)
    alpha_pattern: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError("LoRA rank r must be positive")

    def rank_and_scaling(self, module: str) -> tuple[int, float]:
        """The rank and scale of one module (`model.layers.0.self_attn.q_proj`), as PEFT picks them."""
        r = int(self.rank_pattern.get(_pattern_key(self.rank_pattern, module), self.r))
        key = _pattern_key(self.alpha_pattern, module)
        alpha = float(self.alpha_pattern[key]) if key in self.alpha_pattern else self.alpha
        return r, alpha / (r**0.5 if self.use_rslora else r)


def read_lora_settings(path: Path) -> LoraSettings:
    """Parse `adapter_config.json`; refuse what is not a plain LoRA merge."""
    cfg = read_json_object(path, CheckpointError, "adapter config is not valid JSON", "re-download it")
    kind = str(cfg.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise CheckpointError(path, f"a {kind} adapter: only LoRA adapters can be merged; merge it with peft first")
    for key, what in (("use_dora", "DoRA"), ("lora_bias", "LoRA bias"), ("layer_replication", "layer replication")):
        if cfg.get(key):
            raise CheckpointError(path, f"{what} adapters are not supported; merge it with peft's merge_and_unload")
    base = cfg.get("base_model_name_or_path") or None
    if base is not None and not isinstance(base, str):
        raise CheckpointError(path, f"adapter config's base_model_name_or_path is {base!r:.40}, not a path")
    patterns = {key: cfg.get(key) or {} for key in ("rank_pattern", "alpha_pattern")}
    for key, pattern in patterns.items():
        if not isinstance(pattern, dict):
            raise CheckpointError(path, f"adapter config's {key} is not an object; re-download it")
        for module, value in pattern.items():
            try:
                re.compile(module)
            except re.error as exc:
                raise CheckpointError(path, f"adapter config's {key} key {module!r} is not a pattern ({exc})") from None
            _lora_number(path, f"{key}[{module!r}]", value, rank=key == "rank_pattern")
    return LoraSettings(
        base=base,
        r=int(_lora_number(path, "r", cfg.get("r", 8), rank=True)),
        alpha=_lora_number(path, "lora_alpha", cfg.get("lora_alpha", 8), rank=False),
        use_rslora=bool(cfg.get("use_rslora", False)),
        fan_in_fan_out=bool(cfg.get("fan_in_fan_out", False)),
        rank_pattern=patterns["rank_pattern"],
        alpha_pattern=patterns["alpha_pattern"],
    )


def _lora_number(path: Path, key: str, value: object, rank: bool) -> float:
    """A rank (a positive integer) or a scale (a finite number) of the adapter config, or a one-line error."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or (rank and (number <= 0 or number != int(number))):
        want = "a positive integer" if rank else "a finite number"
        raise CheckpointError(path, f"adapter config's {key} is {value!r:.40}, not {want}; re-download it")
    return float(number)


class AdapterReader(Checkpoint):
    """The model an adapter makes: its base's tensors plus the merged LoRA delta (see the module docstring).

    Args:
        path: the adapter folder.
        base: the opened base model (any `Checkpoint`); the adapter reader owns it and closes it.
        settings: the adapter's LoRA settings; read from its `adapter_config.json` when None.

    Raises:
        CheckpointError: a refused adapter kind, or a LoRA tensor that fits no base tensor (the base is
            closed then).

    Example:
        >>> with open_adapter("adapters/my-lora", "models/llama-8b") as ckpt:  # doctest: +SKIP
        ...     q = ckpt.tensor("model.layers.0.self_attn.q_proj.weight")  # base + s * B @ A
    """

    def __init__(self, path: str | Path, base: Checkpoint, settings: LoraSettings | None = None) -> None:
        self.folder = Path(path)
        self.config_path = self.folder / ADAPTER_CONFIG
        self.base = base
        try:
            self.settings = settings if settings is not None else read_lora_settings(self.config_path)
            self.adapter = CheckpointReader(self.folder / ADAPTER_WEIGHTS)
            self.name: str = self.folder.resolve().name
            self.config: dict[str, Any] = self.base.config
            self.files: tuple[Path, ...] = (*self.base.files, self.adapter.files[0], self.config_path)
            self._infos = self.base._infos  # the merged model has the base's tensors, names and shapes
            self._lora, self._replaced = self._plan()
        except BaseException:
            self.close()
            raise

    # -- the plan: which base tensor gets which delta -----------------------------------------------------

    def _plan(self) -> tuple[dict[str, tuple[str, str, float, bool]], dict[str, str]]:
        lora: dict[str, dict[str, str]] = {}
        replaced: dict[str, str] = {}
        for key in self.adapter.names():
            for marker, what in _REFUSED_KEYS.items():
                if marker in key:
                    raise CheckpointError(self.folder / ADAPTER_WEIGHTS, f"{what} are not supported ('{key}')")
            dtype = self.adapter.info(key).dtype
            if dtype in INTEGER_DTYPES:  # a LoRA factor or replaced weight of integers is no weight to merge
                raise CheckpointError(
                    self.folder / ADAPTER_WEIGHTS,
                    f"adapter tensor '{key}' holds integers ({dtype}), not weights: the adapter is corrupt or "
                    "quantised in a format lineage does not read; save it in BF16, F16 or F32",
                )
            inner = key.removeprefix(_PEFT_PREFIX)
            m = _LORA_KEY.match(inner)
            if m:
                parts = lora.setdefault(m["module"], {})
                parts["A" if m["kind"] in ("lora_A.weight", "lora_embedding_A") else "B"] = key
                parts["embedding"] = "1" if m["kind"].startswith("lora_embedding") else ""
                continue
            target = inner.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
            if target not in self.base:
                raise CheckpointError(
                    self.folder / ADAPTER_WEIGHTS,
                    f"adapter tensor '{key}' matches no tensor of the base '{self.base.name}': wrong --base?",
                )
            self._check_shape(key, self.adapter.info(key).shape, self.base.info(target).shape)
            replaced[target] = key
        plan: dict[str, tuple[str, str, float, bool]] = {}
        for module, parts in sorted(lora.items()):
            target = f"{module}.weight"
            if "A" not in parts or "B" not in parts or target not in self.base:
                raise CheckpointError(
                    self.folder / ADAPTER_WEIGHTS,
                    f"LoRA module '{module}' lacks lora_A/lora_B or matches no base tensor '{target}': "
                    "wrong --base?",
                )
            embedding = bool(parts["embedding"])
            a, b = self.adapter.info(parts["A"]).shape, self.adapter.info(parts["B"]).shape
            r, scale = self.settings.rank_and_scaling(module)
            if len(a) != 2 or len(b) != 2 or a[0] != r or b[1] != r:
                raise CheckpointError(
                    self.folder / ADAPTER_WEIGHTS,
                    f"LoRA module '{module}': lora_A {list(a)} and lora_B {list(b)} do not have rank r={r} "
                    "of adapter_config.json",
                )
            transposed = embedding or self.settings.fan_in_fan_out
            merged = (a[1], b[0]) if transposed else (b[0], a[1])
            self._check_shape(module, merged, self.base.info(target).shape)
            plan[target] = (parts["A"], parts["B"], scale, transposed)
        return plan, replaced

    def _check_shape(self, what: str, got: Sequence[int], want: Sequence[int]) -> None:
        if tuple(got) != tuple(want):
            raise CheckpointError(
                self.folder / ADAPTER_WEIGHTS,
                f"adapter '{what}' gives shape {list(got)} but the base '{self.base.name}' has {list(want)}: "
                "wrong --base?",
            )

    # -- headers: the base's ---------------------------------------------------------------------------

    def _read_vocabulary(self) -> Vocabulary | None:
        """The adapter folder's tokenizer when it has one (a vocabulary extension), else the base's."""
        return find_vocabulary(self.folder) or self.base.vocabulary

    @property
    def merged_tensors(self) -> tuple[str, ...]:
        """Base tensors the adapter changes (LoRA deltas and replaced tensors), sorted."""
        return tuple(sorted({*self._lora, *self._replaced}))

    def header_sha256(self) -> str:
        """sha256 of the base's header hash, the adapter's header hash and the adapter config's bytes."""
        digest = hashlib.sha256(self.base.header_sha256().encode())
        digest.update(self.adapter.header_sha256().encode())
        digest.update(self.config_path.read_bytes())
        return digest.hexdigest()

    # -- data: base + delta ----------------------------------------------------------------------------

    def tensor(self, name: str, *, dtype: torch.dtype = torch.float32, check_finite: bool = True) -> torch.Tensor:
        """The merged tensor (see `CheckpointReader.tensor`)."""
        source, key = self._source(name)
        values = source.tensor(key, dtype=torch.float32, check_finite=check_finite)
        if name in self._lora:
            values = values + self._delta(name, 0, values.shape[0], check_finite)
        return values.to(dtype)

    def file_of(self, name: str) -> Path:
        """The adapter's weights file for a tensor the adapter changes, else the base's file that holds it."""
        if name in self._lora:
            return self.folder / ADAPTER_WEIGHTS
        source, key = self._source(name)
        return source.file_of(key)

    def row_blocks(
        self, name: str, max_bytes: int, *, dtype: torch.dtype | None = torch.float32, check_finite: bool = True
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The merged tensor in row blocks (see `CheckpointReader.row_blocks`; None is float32): the LoRA factors
        are read once, the delta is made per block."""
        source, key = self._source(name)
        dtype = dtype or torch.float32
        factors = self._factors(name, check_finite) if name in self._lora else None
        for start, block in source.row_blocks(key, max_bytes, dtype=torch.float32, check_finite=check_finite):
            if factors is not None:
                block = block + self._delta(name, start, start + block.shape[0], check_finite, factors=factors)
            yield start, block.to(dtype)

    def rows(
        self,
        name: str,
        index: Sequence[int] | torch.Tensor,
        *,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
    ) -> torch.Tensor:
        """Rows of the merged tensor (see `CheckpointReader.rows`)."""
        source, key = self._source(name)
        values = source.rows(key, index, dtype=torch.float32, check_finite=check_finite)
        if name in self._lora:
            idx = torch.as_tensor(index).long()
            idx = torch.where(idx < 0, idx + self.base.info(name).shape[0], idx)
            values = values + self._delta(name, 0, 0, check_finite, rows=idx)
        return values.to(dtype)

    def quantisation_noise(self, name: str, expert: int | None = None) -> torch.Tensor | None:
        """The quantised base's rounding noise (QLoRA): the delta on top is no rounding (see `Checkpoint`)."""
        source, key = self._source(name)
        return source.quantisation_noise(key, expert)

    def _source(self, name: str) -> tuple[Checkpoint, str]:
        # A tensor the adapter stores whole (`modules_to_save`, an embedding's `base_layer`) replaces the base's;
        # a LoRA on that module still adds its delta on top, as peft's merge does.
        if name in self._replaced:
            return self.adapter, self._replaced[name]
        return self.base, name

    def _factors(self, name: str, check_finite: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """`(A, B)` of the LoRA on `name`, read from the adapter file."""
        a_key, b_key, _, _ = self._lora[name]
        read = self.adapter.tensor
        return read(a_key, check_finite=check_finite), read(b_key, check_finite=check_finite)

    def _delta(
        self, name: str, start: int, stop: int, check_finite: bool, rows: torch.Tensor | None = None,
        factors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Rows `[start, stop)` (or `rows`) of `s * B @ A` (transposed layouts: of `s * (B @ A).T`); `factors` are
        `(A, B)` when the caller has read them already."""
        _, _, scale, transposed = self._lora[name]
        a, b = factors or self._factors(name, check_finite)  # r x in, out x r
        pick = rows if rows is not None else slice(start, stop)
        if transposed:  # stored (in, out): row i of the delta is A[:, i] . B^T
            delta = a[:, pick].T @ b.T
        else:
            delta = b[pick] @ a
        delta = delta * scale
        if check_finite and not torch.isfinite(delta).all():
            raise NonFiniteWeightsError(self.folder / ADAPTER_WEIGHTS, f"the LoRA delta of '{name}' holds NaN/Inf")
        return delta

    # -- lifetime --------------------------------------------------------------------------------------

    def prefetch(self, names: Iterable[str]) -> None:
        self.base.prefetch(names)  # the adapter's own tensors are small

    def close(self) -> None:
        """Close both readers."""
        for reader in (getattr(self, "adapter", None), getattr(self, "base", None)):
            if reader is not None:
                reader.close()
        self._closed = True

    def __repr__(self) -> str:
        return f"AdapterReader({self.name!r}: {len(self._lora)} LoRA deltas over {self.base.name!r})"


def _pattern_key(patterns: Mapping[str, Any], module: str) -> str:
    # PEFT's `get_pattern_key`: the first pattern that matches the module name's tail.
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return module
