"""Build the reference catalog: every recipe entry in order, deterministically, skipping finished models.

Determinism is a contract here: the same recipe and seed give byte-identical safetensors files. That
needs fixed intra-op threads (reduction order depends on them), deterministic kernels, seeded
generators everywhere (see `derive`), and parents read back from disk. The global torch settings are
restored when the build returns, since this is a library call.

A model is rebuilt only if its folder lacks a marker with the entry's hash (which covers its parents'
hashes, so changing a base rebuilds its descendants) or when ``force`` is set; interrupted builds resume.
Declaration files (model card, mergekit config) are metadata: they are brought up to date in every
folder on every run, built or skipped, without touching the weights.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lineage.catalog.declare import CARD_NAME, MERGEKIT_CONFIG_NAME, render_card, render_mergekit_config
from lineage.catalog.declare import write_declaration_files as _write_files
from lineage.catalog.manifest import MANIFEST_NAME, catalog_rows, write_manifest
from lineage.catalog.recipe import MERGE_OPS, Entry, Recipe
from lineage.catalog.recipe_toml import default_recipe_path, load_recipe
from lineage.errors import CatalogError

SIZES = ("full", "mini")


@dataclass(frozen=True)
class BuildOptions:
    """What `build_catalog` builds and where.

    Args:
        size: ``full`` (the whole recipe) or ``mini`` (its quick subset, for tests).
        out_dir: folder of the model folders; default ``catalog/models`` of the repository for ``full``
            and ``catalog/models/mini`` for ``mini``.
        manifest: the manifest CSV; default ``models_manifest.csv`` at the repository top for the default
            full catalog, else ``<out_dir>/models_manifest.csv``.
        seed: catalog seed; ``None`` keeps the recipe's.
        force: rebuild models even when their folder is complete and up to date.
        recipe: the recipe TOML; default ``catalog/recipe.toml`` of the repository.
        threads: torch intra-op threads (part of the determinism contract: same threads, same bytes).
    """

    size: str = "full"
    out_dir: Path | None = None
    manifest: Path | None = None
    seed: int | None = None
    force: bool = False
    recipe: Path | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size {self.size!r}: use one of {SIZES}")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")

    def resolved_out_dir(self) -> Path:
        if self.out_dir is not None:
            return Path(self.out_dir)
        models = default_recipe_path().parent / "models"
        return models if self.size == "full" else models / "mini"

    def resolved_manifest(self) -> Path:
        if self.manifest is not None:
            return Path(self.manifest)
        if self.out_dir is None and self.size == "full":
            return default_recipe_path().parents[1] / MANIFEST_NAME
        return self.resolved_out_dir() / MANIFEST_NAME


@dataclass(frozen=True)
class BuildEvent:
    """Progress report: model ``index`` of ``total`` is ``name``; ``action`` is ``built`` or ``skipped``."""

    index: int
    total: int
    name: str
    action: str
    seconds: float


ProgressCallback = Callable[[BuildEvent], None]


def _require_catalog_extra() -> None:
    try:
        import peft  # noqa: F401
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise CatalogError(f"building the catalog needs the catalog extra ({exc.name} is missing): "
                           "pip install -e '.[catalog]'") from exc


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Fix threads and deterministic kernels for the duration of a build, then restore them."""
    import torch

    from lineage.catalog.save import quiet_transformers

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with quiet_transformers():
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def build_models(recipe: Recipe, out_dir: Path, *, force: bool = False, threads: int = 1,
                 progress: ProgressCallback | None = None) -> list[Path]:
    """Build (or skip) every entry of an already selected recipe into ``out_dir``.

    Returns:
        The model folders, in recipe order.
    """
    from lineage.catalog.derive import Workspace, derive
    from lineage.catalog.save import is_built, save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    ws = Workspace(recipe=recipe, out_dir=out_dir)
    folders = []
    total = len(recipe.entries)
    with deterministic_torch(threads):
        for i, entry in enumerate(recipe.entries):
            start = time.perf_counter()
            folder = out_dir / entry.name
            digest = recipe.entry_hash(entry.name)
            partial = folder.with_name(folder.name + ".partial")
            if partial.exists():
                shutil.rmtree(partial)  # left by an interrupted build
            if not force and is_built(folder, digest):
                action = "skipped"
            else:
                try:
                    model, tok, info = derive(ws, entry)
                except ValueError as exc:
                    raise CatalogError(f"{entry.name}: {exc}; fix this entry in {recipe.path}") from exc
                marker = {"hash": digest, "name": entry.name, "op": entry.op, "parents": list(entry.parents),
                          "info": info}
                save_model(model, tok, folder, layout=entry.layout, dtype=entry.dtype,
                           shard_size=recipe.settings.shard_size, marker=marker)
                action = "built"
            write_declarations(entry, folder)
            folders.append(folder)
            if progress is not None:
                progress(BuildEvent(i + 1, total, entry.name, action, time.perf_counter() - start))
    return folders


def write_declarations(entry: Entry, folder: Path) -> None:
    """Bring a built model's declaration files in line with its recipe entry.

    The card (``README.md``) exists only for entries that declare (``declare`` in the recipe); a merge
    that truthfully declares its parents also gets its ``mergekit_config.yml`` with the merge's weights
    (read from the marker, where metric-weighted merges record the weights computed at build time).
    """
    from lineage.catalog.save import read_marker

    d = entry.declared
    card = render_card(entry.name, d) if d is not None else None
    config = None
    if d is not None and d.true_parents and entry.op in MERGE_OPS:
        marker = read_marker(folder) or {}
        weights = marker.get("info", {}).get("weights", list(entry.weights))
        config = render_mergekit_config(entry.op, entry.base, entry.parents, weights, entry.params)
    _write_files(folder, {CARD_NAME: card, MERGEKIT_CONFIG_NAME: config})


def _selected_recipe(options: BuildOptions) -> Recipe:
    recipe = load_recipe(options.recipe).with_seed(options.seed)
    try:
        return recipe.select(options.size)
    except ValueError as exc:
        raise CatalogError(f"{recipe.path}: {exc}") from exc


def write_catalog_manifest(options: BuildOptions) -> Path:
    """Write the manifest of the catalog `build_catalog` would build, without building anything.

    The manifest depends on the recipe alone (names, roles, families, parents, declarations), so it can
    be regenerated after a recipe edit before the models are (re)built.

    Returns:
        The path of the manifest CSV.
    """
    recipe = _selected_recipe(options)
    manifest = options.resolved_manifest()
    return write_manifest(catalog_rows(recipe, options.resolved_out_dir(), manifest), manifest)


def build_catalog(options: BuildOptions, progress: ProgressCallback | None = None) -> Path:
    """Build the reference catalog and write its manifest.

    Args:
        options: size, folders, seed, force (see `BuildOptions`).
        progress: called after each model with a `BuildEvent` (the CLI draws a bar from it).

    Returns:
        The path of the manifest CSV.

    Raises:
        CatalogError: the catalog extra is missing or the recipe is invalid.

    Example:
        >>> manifest = build_catalog(BuildOptions(size="mini", out_dir=Path("/tmp/catalog")))
    """
    _require_catalog_extra()
    recipe = _selected_recipe(options)
    out_dir = options.resolved_out_dir()
    manifest = options.resolved_manifest()
    build_models(recipe, out_dir, force=options.force, threads=options.threads, progress=progress)
    return write_manifest(catalog_rows(recipe, out_dir, manifest), manifest)
