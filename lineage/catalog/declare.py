"""Declared lineage: the model cards (and mergekit configs) the catalog writes, and what checking them should say.

On the hub the only lineage record is what the uploader declares: the model card's YAML front matter
(``base_model``, a list for merges, and ``base_model_relation``), and for merges made with mergekit the
``mergekit_config.yml`` that names the merged models. The catalog writes such declarations for the entries
whose recipe asks for one -- some true, some false (another family's base, another size of the same
family), some naming a model that is not in the catalog -- and none for the others, so that a checker of
declared lineage (``lineage verify``) can be scored on models whose true lineage is known.

Every catalog model has a hub id, ``lineage-catalog/<name>``. The manifest records it (column ``hub_id``)
and what the card declares (column ``declared``: hub ids, ``;``-joined), so `expected_outcome` computes the
right answer from the manifest alone.

Declarations are metadata, not weights: they are (re)written next to the weights on every build, finished
or skipped, and never make a model stale.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HUB_NAMESPACE = "lineage-catalog"
CARD_NAME = "README.md"
MERGEKIT_CONFIG_NAME = "mergekit_config.yml"
RELATIONS = ("finetune", "adapter", "merge", "quantized")
OUTCOMES = ("consistent", "contradicted", "undeclared", "unverifiable")
TRUE_DECLARATION = "parents"  # ``declare = "parents"``: the entry's direct parents, as an honest uploader writes
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_QUANTIZED_OPS = ("quant_int8", "quant_int4", "cast_bf16", "cast_fp16")
# mergekit's names for the merge methods (it has no metric-weighted averaging: the weights computed at
# build time are written as a linear merge, which is what the result is).
_MERGEKIT_METHODS = {"merge_linear": "linear", "merge_task_arithmetic": "task_arithmetic", "merge_ties": "ties",
                     "merge_dare_ties": "dare_ties", "merge_dare_linear": "dare_linear", "merge_slerp": "slerp",
                     "merge_metric_weighted": "linear"}
_BASE_METHODS = ("task_arithmetic", "ties", "dare_ties", "dare_linear")


def hub_id(name: str) -> str:
    """The hub id of a catalog model: ``lineage-catalog/<name>``."""
    return f"{HUB_NAMESPACE}/{name}"


@dataclass(frozen=True)
class Declaration:
    """What a model card declares.

    Args:
        base_models: the declared hub ids (several for a merge); empty for a card without ``base_model``.
        relation: ``base_model_relation`` (one of ``RELATIONS``), empty when nothing is declared.
        true_parents: whether ``base_models`` are the entry's own direct parents (then a merge also gets
            its ``mergekit_config.yml``).
    """

    base_models: tuple[str, ...]
    relation: str
    true_parents: bool = False

    def __post_init__(self) -> None:
        bad = [m for m in self.base_models if not _HUB_ID.match(m)]
        if bad:
            raise ValueError(f"declared base_model {bad[0]!r} is not a hub id (owner/name)")
        if self.base_models and self.relation not in RELATIONS:
            raise ValueError(f"base_model_relation {self.relation!r}: use one of {RELATIONS}")
        if not self.base_models and self.relation:
            raise ValueError("a base_model_relation needs a declared base_model")
        if len(self.base_models) > 1 and self.relation != "merge":
            raise ValueError("several base_model ids are declared only for a merge (relation = \"merge\")")


def parse_declaration(name: str, value: object, relation: object, *, op: str, parents: tuple[str, ...],
                      names: frozenset[str]) -> Declaration:
    """A recipe's ``declare`` (and optional ``relation``) value as a `Declaration`.

    Args:
        name: the entry (for error messages).
        value: ``"parents"`` (the truth), or a list of catalog names and hub ids (``owner/name``, kept as
            they are); an empty list writes a card without ``base_model``.
        relation: ``base_model_relation``; by default ``merge`` for merges, ``quantized`` for quantisation
            and casts, ``finetune`` otherwise.
        op: the entry's operation.
        parents: the entry's direct parents.
        names: every model name of the recipe.

    Raises:
        ValueError: an unknown name, a malformed hub id, or a relation that does not fit.
    """
    if value == TRUE_DECLARATION:
        if not parents:
            raise ValueError(f"{name}: declare = \"parents\" needs parents; name the declared models instead")
        ids, true_parents = tuple(hub_id(p) for p in parents), True
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        unknown = [v for v in value if "/" not in v and v not in names]
        if unknown:
            raise ValueError(f"{name}: declares {unknown[0]!r}, neither a catalog model nor a hub id (owner/name)")
        ids = tuple(v if "/" in v else hub_id(v) for v in value)
        true_parents = bool(parents) and ids == tuple(hub_id(p) for p in parents)
    else:
        raise ValueError(f"{name}: declare must be \"parents\" or a list of model names / hub ids")
    if relation is None:
        relation = "" if not ids else ("merge" if op in _MERGEKIT_METHODS or len(ids) > 1
                                       else "quantized" if op in _QUANTIZED_OPS else "finetune")
    try:
        return Declaration(base_models=ids, relation=str(relation), true_parents=true_parents)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def render_card(name: str, declaration: Declaration) -> str:
    """The model card ``README.md``: YAML front matter as the hub writes it, and a body that tells nothing."""
    lines = ["---"]
    if len(declaration.base_models) == 1:
        lines.append(f"base_model: {declaration.base_models[0]}")
    elif declaration.base_models:
        lines += ["base_model:", *(f"- {m}" for m in declaration.base_models)]
    if declaration.relation:
        lines.append(f"base_model_relation: {declaration.relation}")
    tags = ["lineage-catalog", *(("mergekit", "merge") if declaration.relation == "merge" else ())]
    lines += ["library_name: transformers", "license: apache-2.0", "tags:", *(f"- {t}" for t in tags), "---", "",
              f"# {name}", "", "A small model published with the lineage reference catalog.", ""]
    return "\n".join(lines)


def render_mergekit_config(op: str, base: str, parents: Sequence[str], weights: Sequence[float],
                           params: Mapping[str, object]) -> str:
    """``mergekit_config.yml`` of a merge, in mergekit's format, naming the models by hub id.

    Args:
        op: the catalog's merge operation (``merge_ties``...).
        base: the merge's root base (named as ``base_model`` by the methods that use one).
        parents: the merged models.
        weights: one weight per parent (SLERP: ``(1 - t, t)``).
        params: the recipe's merge parameters (``density``, ``t``).
    """
    method = _MERGEKIT_METHODS[op]
    lines = [f"merge_method: {method}"]
    if method == "slerp":
        lines += [f"base_model: {hub_id(parents[0])}", "models:", *(f"- model: {hub_id(p)}" for p in parents),
                  "parameters:", f"  t: {float(weights[1])!r}"]
    else:
        if method in _BASE_METHODS:
            lines.append(f"base_model: {hub_id(base)}")
        lines.append("models:")
        for parent, weight in zip(parents, weights, strict=True):
            lines += [f"- model: {hub_id(parent)}", "  parameters:", f"    weight: {float(weight)!r}"]
            if "density" in params and method != "task_arithmetic":
                lines.append(f"    density: {float(params['density'])!r}")  # type: ignore[arg-type]
    lines += ["dtype: float32", ""]
    return "\n".join(lines)


def write_declaration_files(folder: Path, files: Mapping[str, str | None]) -> None:
    """Write (or remove, for ``None``) the declaration files of a model folder, each atomically.

    A file whose content is already right is left untouched, so a rebuild changes no modification time.
    """
    for file_name, text in files.items():
        path = Path(folder) / file_name
        if text is None:
            path.unlink(missing_ok=True)
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)


def expected_outcome(*, role: str, base: str, declared: Sequence[str],
                     lineage_of: Mapping[str, str]) -> str | None:
    """What checking a model's declaration against its weights should answer, from the manifest alone.

    Args:
        role: the model's manifest role; bases (the references) are not checked: ``None``.
        base: the base its weights descend from (empty for independents and outsiders).
        declared: the hub ids its card declares (empty: nothing declared).
        lineage_of: ``{hub id: root base}`` for every model of the manifest (column ``hub_id`` to column
            ``base``; empty for independents and outsiders, which descend from no reference).

    Returns:
        ``consistent`` (a declared model descends from the base the weights descend from -- one is
        enough, as a merge may name models of several lineages -- or nothing is declared and nothing
        derived), ``contradicted`` (they all resolve, to other bases, or the weights descend from none),
        ``undeclared`` (derived, nothing declared) or ``unverifiable`` (a declared id is not in the
        manifest, or names a model that descends from no reference). This is the rule of
        ``lineage.verify.outcome`` with the true lineage in place of the weights' verdict.
    """
    if role == "base":
        return None
    if not declared:
        return "undeclared" if base else "consistent"
    roots = [lineage_of.get(m, "") for m in declared]
    if not all(roots):
        return "unverifiable"
    return "consistent" if base and base in roots else "contradicted"
