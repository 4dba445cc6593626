"""The declarative recipe (``catalog/recipe.toml``) as frozen, validated dataclasses (read from its file by
`lineage.catalog.recipe_toml.load_recipe`; merge weights for scoring in `lineage.catalog.truth`).

The recipe is the catalog's ground truth: which bases exist, how each derivative was made (operation,
parents, weights, seed), which models are outsiders, which are trained independently on a family's
tokenizer (the hard negatives: related, never derived), what each model declares about its lineage in
its model card, and which subset the quick ``mini`` build takes. Everything a scorer needs -- the family
of a model, the parents and weights of a merge, the expected outcome of checking a declaration -- is read
from here, never guessed from the built files.

Validation happens at load time (``ValueError`` from ``__post_init__``, wrapped into ``CatalogError``
with the recipe's path), so a typo fails in a second rather than after minutes of training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lineage.catalog.architectures import Shape
from lineage.catalog.bpe import TOKENIZER_KINDS
from lineage.catalog.declare import Declaration
from lineage.catalog.text import validate_sources

# Bump when the builder's code changes what a recipe entry produces: every marker then goes stale.
BUILDER_VERSION = 2

TRAINING_OPS = ("finetune", "lora", "instruct", "continued_pretrain")
MERGE_OPS = ("merge_linear", "merge_task_arithmetic", "merge_ties", "merge_dare_ties", "merge_dare_linear",
             "merge_slerp", "merge_metric_weighted")
WEIGHT_OPS = ("quant_int8", "quant_int4", "prune_magnitude", "cast_bf16", "cast_fp16", "vocab_extend",
              "layer_removal", "depth_prune", "depth_upscale", "abliteration")
# Token ids renumbered (embedding/head rows and tokenizer.json alike) or a share of tokens dropped.
VOCAB_OPS = ("vocab_permute", "vocab_trim")
DISGUISE_OPS = ("disguise_permute_ffn", "disguise_mergelock", "disguise_norm_rescale", "disguise_rotate_residual",
                "disguise_all")
DERIVATION_OPS = TRAINING_OPS + MERGE_OPS + WEIGHT_OPS + VOCAB_OPS + DISGUISE_OPS
# Trained from scratch on a family's tokenizer: the family's own data, or another family's mixture.
INDEPENDENT_KINDS = ("independent_same_data", "independent_other_data")
INDEPENDENT_SUFFIX = "_of_independent"  # a derivative of an independent model: "finetune_of_independent"
ROLES = ("base", "derivative", "outsider", "independent")
LAYOUTS = ("single", "sharded")
DTYPES = ("float32", "bfloat16", "float16")
OUTSIDER_FAMILY = "unknown"

# Parameters each operation accepts (anything else in the recipe is a typo).
_OP_PARAMS: dict[str, frozenset[str]] = {
    **{op: frozenset({"sources", "steps", "lr"}) for op in ("finetune", "instruct", "continued_pretrain")},
    "lora": frozenset({"sources", "steps", "lr", "rank", "alpha"}),
    "merge_linear": frozenset(),
    "merge_task_arithmetic": frozenset(),
    "merge_ties": frozenset({"density"}),
    "merge_dare_ties": frozenset({"density"}),
    "merge_dare_linear": frozenset({"density"}),
    "merge_slerp": frozenset({"t"}),
    "merge_metric_weighted": frozenset({"sources", "temperature"}),
    "quant_int8": frozenset({"group_size"}),
    "quant_int4": frozenset({"group_size"}),
    "prune_magnitude": frozenset({"sparsity"}),
    "cast_bf16": frozenset(),
    "cast_fp16": frozenset(),
    "vocab_extend": frozenset({"sources", "new_tokens", "steps", "lr"}),
    "layer_removal": frozenset({"layer"}),
    "depth_prune": frozenset({"drop"}),
    "depth_upscale": frozenset(),
    "abliteration": frozenset({"layer", "prompts"}),
    "vocab_permute": frozenset(),
    "vocab_trim": frozenset({"keep"}),
    **{op: frozenset() for op in DISGUISE_OPS},
}


def size_in_bytes(size: str) -> int:
    """``"150KB"`` -> 150000 (decimal units KB, MB, GB, as transformers reads ``max_shard_size``)."""
    units = {"GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    text = size.strip().upper()
    for unit, factor in units.items():
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)]) * factor
    raise ValueError(f"shard size {size!r}: write e.g. 150KB or 1MB")


@dataclass(frozen=True)
class Settings:
    """Catalog-wide settings: global seed, batch shape, text budget, shard size for sharded layouts."""

    seed: int = 0
    seq_len: int = 64
    batch_size: int = 16
    max_chars: int = 1_500_000
    shard_size: str = "1MB"

    def __post_init__(self) -> None:
        if self.seq_len < 8 or self.batch_size < 1 or self.max_chars < 10_000:
            raise ValueError(f"implausible catalog settings {self}")
        size_in_bytes(self.shard_size)


@dataclass(frozen=True)
class Family:
    """A model family: its tokenizer and its pretraining mixture (shared by all its sizes)."""

    name: str
    tokenizer: str
    vocab: int
    sources: tuple[str, ...]
    seed: int

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZER_KINDS:
            raise ValueError(f"family {self.name}: tokenizer {self.tokenizer!r} not in {TOKENIZER_KINDS}")
        if not 300 <= self.vocab <= 65536:
            raise ValueError(f"family {self.name}: tokenizer vocab {self.vocab} out of range")
        validate_sources(self.sources)


@dataclass(frozen=True)
class Entry:
    """One model of the catalog.

    Args:
        name: folder name and manifest key.
        role: ``base``, ``derivative``, ``outsider`` or ``independent`` (trained from scratch with a
            family's tokenizer, or derived from such a model: never derived from a base).
        op: the derivation kind (``base``, ``outsider`` and ``independent`` for trained-from-scratch models).
        family: the tokenizer family (for derivatives: inherited from the root).
        base: name of the root base (empty for bases, outsiders and independents).
        parents: direct parents (several for merges).
        weights: merge weights, one per parent (empty for non-merges; computed at build time for
            ``merge_metric_weighted``).
        params: operation parameters (see ``_OP_PARAMS``).
        seed: the entry's own seed, combined with the catalog seed.
        layout: ``single`` file or ``sharded`` with an index.
        dtype: dtype of the saved tensors.
        shape: sizes for bases and outsiders.
        steps: pretraining steps for bases and outsiders.
        lr: pretraining learning rate.
        data: the family whose pretraining mixture a from-scratch model trains on (its own by default;
            another one for ``independent_other_data``).
        declared: what the model card declares about its lineage (``None``: no card).
    """

    name: str
    role: str
    op: str
    family: str
    base: str = ""
    parents: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    seed: int = 0
    layout: str = "single"
    dtype: str = "float32"
    shape: Shape | None = None
    steps: int = 0
    lr: float = 0.0
    data: str = ""
    declared: Declaration | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} not in {ROLES}")
        if self.layout not in LAYOUTS or self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: layout must be one of {LAYOUTS}, dtype one of {DTYPES}")
        if self.declared is not None and self.role in ("base", "outsider"):
            raise ValueError(f"{self.name}: a {self.role} is trained from scratch and declares no base_model")
        if self.parents:
            if self.role not in ("derivative", "independent"):
                raise ValueError(f"{self.name}: a {self.role} has no parents")
            self._check_derivative()
        elif self.role == "derivative" or self.shape is None or self.steps <= 0 or self.lr <= 0:
            raise ValueError(f"{self.name}: a {self.role} needs a shape, steps > 0, lr > 0 and no parents")

    def _check_derivative(self) -> None:
        if self.op not in DERIVATION_OPS:
            raise ValueError(f"{self.name}: unknown operation {self.op!r}; known: {', '.join(DERIVATION_OPS)}")
        unknown = set(self.params) - _OP_PARAMS[self.op]
        if unknown:
            raise ValueError(f"{self.name}: {self.op} takes no parameter(s) {sorted(unknown)}")
        if self.op in MERGE_OPS:
            n = len(self.parents)
            if n < 2 or (self.op == "merge_slerp" and n != 2):
                raise ValueError(f"{self.name}: {self.op} needs {'exactly 2' if self.op == 'merge_slerp' else '2+'}"
                                 " parents")
            if self.op not in ("merge_slerp", "merge_metric_weighted") and len(self.weights) != n:
                raise ValueError(f"{self.name}: give one weight per parent ({n})")
            if len(set(self.parents)) != n:
                raise ValueError(f"{self.name}: a merge's parents must differ")
        elif len(self.parents) != 1 or self.weights:
            raise ValueError(f"{self.name}: {self.op} takes exactly one parent and no weights")
        if "sources" in self.params:
            validate_sources(self.params["sources"])

    @property
    def from_scratch(self) -> bool:
        """Whether the model is pretrained from a random initialisation (bases, outsiders, independents)."""
        return not self.parents

    @property
    def derivation(self) -> str:
        """The manifest's short derivation kind (``independent_same_data``, ``finetune_of_independent``...)."""
        if self.role != "independent":
            return self.op
        if self.parents:
            return self.op + INDEPENDENT_SUFFIX
        return INDEPENDENT_KINDS[0] if self.data in ("", self.family) else INDEPENDENT_KINDS[1]

    @property
    def data_family(self) -> str:
        """The family whose pretraining mixture a from-scratch model trains on."""
        return self.data or self.family

    def param(self, key: str, default: Any) -> Any:
        """An operation parameter, or ``default`` when the recipe leaves it out."""
        return self.params.get(key, default)


@dataclass(frozen=True)
class Recipe:
    """A whole recipe: settings, families and entries in build (topological) order."""

    settings: Settings
    families: Mapping[str, Family]
    entries: tuple[Entry, ...]
    mini: tuple[str, ...] = ()
    mini_steps: int = 30
    mini_chars: int = 200_000
    path: Path | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for e in self.entries:
            if e.name in seen:
                raise ValueError(f"model {e.name!r} is declared twice")
            missing = [p for p in e.parents if p not in seen]
            if missing:
                raise ValueError(f"{e.name}: parent(s) {missing} must be declared before it")
            if e.family not in self.families and e.role != "outsider":
                raise ValueError(f"{e.name}: unknown family {e.family!r}")
            if e.data and e.data not in self.families:
                raise ValueError(f"{e.name}: unknown data family {e.data!r}")
            seen.add(e.name)

    def __getitem__(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def select(self, size: str) -> Recipe:
        """The ``full`` recipe, or the ``mini`` subset with steps and text capped for a quick build."""
        if size == "full":
            return self
        if size != "mini":
            raise ValueError(f"size {size!r}: use full or mini")
        keep = set(self.mini)
        for e in self.entries:
            if e.name in keep and not set(e.parents) <= keep:
                raise ValueError(f"mini subset: {e.name} needs its parents {list(e.parents)} in the subset")
        cap = self.mini_steps

        def _capped(e: Entry) -> Entry:
            params = dict(e.params)
            if "steps" in params:
                params["steps"] = min(int(params["steps"]), cap)
            return replace(e, steps=min(e.steps, cap) if e.steps else 0, params=MappingProxyType(params))

        settings = replace(self.settings, max_chars=min(self.settings.max_chars, self.mini_chars))
        return replace(self, settings=settings, entries=tuple(_capped(e) for e in self.entries if e.name in keep))

    def with_seed(self, seed: int | None) -> Recipe:
        """The same recipe under another catalog seed (``None`` keeps the recipe's)."""
        return self if seed is None else replace(self, settings=replace(self.settings, seed=seed))

    def entry_hash(self, name: str) -> str:
        """A digest of everything that determines the model's bytes (its parents' digests included)."""
        e = self[name]
        # What a model card declares is written next to the weights on every build, without retraining:
        # it stays out of the hash (and so do fields at their default, so that adding a field to the
        # recipe does not make every finished model stale).
        entry = {k: v for k, v in vars(e).items() if k not in ("params", "shape", "declared")}
        if not entry["data"]:
            del entry["data"]
        payload = {
            "version": BUILDER_VERSION,
            "settings": vars(self.settings),
            "entry": entry,
            "params": dict(e.params),
            "shape": vars(e.shape) if e.shape else None,
            "family": vars(self.families[e.family]) if e.family in self.families else None,
            "parents": [self.entry_hash(p) for p in e.parents],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()
