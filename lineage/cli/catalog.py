"""`lineage catalog build`: build the reference catalog of small real-architecture models."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import OutDirOpt, QuietOpt
from lineage.cli._progress import LINES, progress_bar, progress_mode, say


class CatalogSize(str, Enum):
    full = "full"
    mini = "mini"


def build(
    size: Annotated[CatalogSize, typer.Option("--size", help="full (75 models) or mini (a quick subset).")] = (
        CatalogSize.full),
    out: OutDirOpt = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", metavar="FILE", help="Manifest CSV to write.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", metavar="N", help="Catalog seed (default: the recipe's).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild models that are already complete.")] = False,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", metavar="FILE", help="Recipe TOML (default catalog/recipe.toml).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Build the reference catalog deterministically and write its manifest.

    Models go to catalog/models/<name>/ (catalog/models/mini/ for --size mini) unless --out is given;
    complete, up-to-date models are skipped, so an interrupted build resumes quickly.
    """
    from lineage.catalog import BuildEvent, BuildOptions, build_catalog

    options = BuildOptions(size=size.value, out_dir=out, manifest=manifest, seed=seed, force=force, recipe=recipe)
    counts = {"built": 0, "skipped": 0}
    lines = progress_mode(quiet) == LINES
    with progress_bar(total=0, desc="catalog", disable=quiet) as bar:

        def _progress(event: BuildEvent) -> None:
            counts[event.action] += 1
            if lines:
                say(f"catalog {sum(counts.values())}/{event.total}  {event.name}  {event.action}")
            bar.total = event.total
            bar.set_postfix_str(f"{event.name} ({event.action})")
            bar.update(1)

        path = build_catalog(options, progress=_progress)
    typer.echo(f"{counts['built']} built, {counts['skipped']} up to date; manifest: {path}")


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` command group to the top-level app."""
    group = typer.Typer(name="catalog", help="Build the reference catalog of models.", no_args_is_help=True)
    group.command("build")(build)
    app.add_typer(group, name="catalog")
