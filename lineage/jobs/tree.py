"""The job behind `lineage tree`: fingerprint the models (and the references, when given), recover their
tree from the weights (`lineage.tree`), and check each model's declarations against it (base model and
licence), as a library function that never prints.

The references, when given, are nodes of the tree like any model: a known base is a root its derivatives
hang from, and its manifest row carries the `hub_id` and `license` its descendants are checked against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lineage.errors import ClassificationError, LineageError
from lineage.fingerprint.gather import ModelOutcome
from lineage.fingerprint.inputs import expand_inputs
from lineage.io.declared import card_licence
from lineage.io.names import unique_names
from lineage.jobs.options import Progress, ScanOptions
from lineage.refs.manifest import Manifest, ManifestRow, manifest_of_models
from lineage.refs.open import open_references
from lineage.tree import ModelTree, TreeOptions, build_tree
from lineage.tree.licence import NodeCheck, check_node
from lineage.tree.relation import HUB_RELATIONS
from lineage.verify.declarations import ReferenceIndex, declared_lineage


@dataclass(frozen=True)
class TreeResult:
    """What `tree_job` found.

    Attributes:
        tree: the recovered tree (models that failed are not in it).
        rows: the manifest rows of the models, in order (references first when given apart).
        outcomes: one per row (failed ones carry their error).
        checks: model name -> its declaration checks (licence, base model).
        hub_ids: model name -> hub id (None when unknown).
        summary: counts and timing.
    """

    tree: ModelTree
    rows: tuple[ManifestRow, ...]
    outcomes: tuple[ModelOutcome, ...]
    checks: dict[str, NodeCheck]
    hub_ids: dict[str, str | None]
    summary: dict

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [(o.key.name, o.error or "failed") for o in self.outcomes if not o.ok]

    def nodes(self) -> list[dict]:
        """One JSON-ready object per model: its parents, relation, roots, checks (failed models: the error)."""
        out = []
        for row, o in zip(self.rows, self.outcomes):
            node = {"name": row.name, "path": str(row.path), "hub_id": self.hub_ids.get(row.name),
                    "status": "ok" if o.ok else "error", "error": o.error}  # fmt: skip
            if o.ok:
                ups = self.tree.parents_of(row.name)
                node["parents"] = [e.parent for e in ups]
                node["relation"] = ups[0].relation if ups else None
                node.update(self.checks[row.name].to_dict())
            out.append(node)
        return out

    def to_dict(self) -> dict:
        return {"summary": self.summary, "nodes": self.nodes(), "edges": [e.to_dict() for e in self.tree.edges]}

    def card(self, name: str) -> str:
        """The model-card YAML front matter a hub would fill its model tree from (`base_model`, a list for a
        merge, and `base_model_relation` in the hub's words; lineage's own relation in a comment)."""
        ups = [e for e in self.tree.parents_of(name) if e.direction == "directed"]
        if not ups:
            undirected = bool(self.tree.parents_of(name))  # only undirected edges lead to it
            why = "an edge whose direction the weights do not decide" if undirected else "no parent recovered (a root)"
            return f"# {name}: {why}\n"
        ups.sort(key=lambda e: -(e.merge_weight or 0.0))  # a merge's parents, the largest weight first
        ids = [self.hub_ids.get(e.parent) or e.parent for e in ups]
        rel = ups[0].relation
        lines = [f"# {name}: recovered from the weights by lineage"]
        if len(ids) == 1:
            lines.append(f"base_model: {_yaml(ids[0])}")
        else:
            lines += ["base_model:"] + [f"  - {_yaml(i)}" for i in ids]
        hub = rel if rel in HUB_RELATIONS else "finetune"
        lines.append(f"base_model_relation: {hub}" + ("" if hub == rel else f"  # lineage: {rel}"))
        return "\n".join(lines) + "\n"


def _yaml(text: str) -> str:
    return text if text.replace("/", "").replace("-", "").replace("_", "").replace(".", "").isalnum() else repr(text)


def tree_job(
    models: str | Path | Manifest | Sequence[str | Path],
    options: ScanOptions | None = None,
    tree_options: TreeOptions | None = None,
    references: str | Path | Manifest | None = None,
    progress: Progress | None = None,
) -> TreeResult:
    """Fingerprint the models (cached) and recover their tree.

    Args:
        models: a manifest CSV (or a parsed one), or model paths (folders, folders of folders, GGUF files,
            fingerprint files).
        options: how fingerprints are obtained (device, cache, executor, key).
        tree_options: the tree's settings.
        references: known models (manifest, pack, `builtin`), nodes of the tree too.
        progress: `progress(done, total, name)` after each model fingerprinted.

    Returns:
        The result; models that failed are rows with an error and are left out of the tree.

    Raises:
        ClassificationError: fewer than two models could be fingerprinted.
    """
    options = options or ScanOptions()
    start = time.perf_counter()
    if isinstance(models, Manifest):
        manifest, unreadable = models, []
    elif isinstance(models, (str, Path)):
        manifest, unreadable = open_references(models, require_references=False), []
    else:
        manifest, unreadable = manifest_of_models(expand_inputs(list(models)))
    ref_rows = list(options.references(references).rows) if references is not None else []
    rows = _named_apart([*ref_rows, *manifest.rows])
    outcomes = list(options.source.gather([(r.name, r.path, r) for r in rows], progress))
    outcomes += [ModelOutcome(r.name, r.path, None, None, e, 0.0, key=r) for r, e in unreadable]
    rows += [r for r, _ in unreadable]
    good = [o for o in outcomes if o.ok]
    if len(good) < 2:
        first = next((o.error for o in outcomes if not o.ok), "fewer than two models given")
        raise ClassificationError(f"a tree needs at least two models that can be fingerprinted ({first})")
    fps = [replace(o.fingerprint, name=o.key.name) for o in good]
    tree = build_tree(fps, tree_options)
    index = ReferenceIndex(Manifest(Path("."), tuple(rows), has_role=False))
    # A model's licence: its card's `license`, else its row's; a root's is what its descendants inherit.
    licences = {o.key.name: _card_licence(o.key) or o.key.license for o in good}
    checks = {o.key.name: check_node(tree, o.key.name, licences, _declared(o, index)) for o in good}
    summary = {
        "models": len(rows), "fingerprinted": len(good), "failed": len(rows) - len(good),
        "edges": len(tree.edges), "roots": len(tree.roots), "candidates": tree.candidates, "tested": tree.tested,
        "significant": tree.significant, "alpha": tree.alpha,
        "undirected": sum(e.direction != "directed" for e in tree.edges),
        "license_conflicts": sorted(n for n, c in checks.items() if c.licence_conflict),
        "declared_contradicted": sorted(n for n, c in checks.items() if c.declared_check == "contradicted"),
        "seconds": round(time.perf_counter() - start, 3),
    }  # fmt: skip
    hub_ids = {r.name: r.hub_id for r in rows}
    return TreeResult(tree, tuple(rows), tuple(outcomes), checks, hub_ids, summary)


def _named_apart(rows: list[ManifestRow]) -> list[ManifestRow]:
    """Rows whose names clash (a reference and a model of one name) told apart by their folders."""
    names = unique_names([r.name for r in rows], [r.path for r in rows])
    return [r if r.name == n else replace(r, name=n) for r, n in zip(rows, names)]


def _card_licence(row: ManifestRow) -> str | None:
    """The `license` of the model card's front matter (None when there is none, or the card is unreadable)."""
    try:
        return card_licence(row.path)
    except LineageError:  # an unreadable card declares no licence
        return None


def _declared(outcome: ModelOutcome, index: ReferenceIndex) -> tuple[str | None, ...]:
    """The model's declared base models resolved to models of the tree (None for one naming none)."""
    try:
        declaration = declared_lineage(outcome.path, index)
    except LineageError:  # an unreadable card declares nothing the tree can check
        return ()
    out = []
    for base in declaration.bases:
        found = index.resolve(base)
        out.append(found[0].name if found else None)
    return tuple(out)


def evaluate_tree(
    manifest: str | Path | Manifest,
    options: ScanOptions | None = None,
    progress: Progress | None = None,
    tree_options: TreeOptions | None = None,
) -> dict:
    """Recover the tree of a labelled manifest's models with no label given, then score it against the
    manifest's `parents` and `derivation` columns (`lineage.tree.score`).

    Returns:
        The scores (`score_tree`) with the job's summary under `summary`.
    """
    from lineage.tree.score import score_tree

    result = tree_job(manifest, options, tree_options, progress=progress)
    return {**score_tree(result.tree, result.rows), "summary": result.summary}
