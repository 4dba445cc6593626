"""`lineage attribute`: name the parents of a merged suspect and estimate their weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import DeviceChoice, DeviceOpt, QuietOpt
from lineage.cli._progress import progress_bar


def register(app: typer.Typer) -> None:
    """Add the `attribute` command to `app`."""
    app.command("attribute")(attribute)


def attribute(
    suspects: Annotated[list[Path], typer.Argument(help="Suspect model folders or fingerprint files.")],
    candidates: Annotated[Path, typer.Option("--candidates", help="Manifest CSV of known models (parents, bases).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    device: DeviceOpt = DeviceChoice.auto,
    cache: Annotated[Path | None, typer.Option("--cache", help="Fingerprint cache folder.")] = None,
    min_weight: Annotated[float, typer.Option(help="Smallest weight reported as a parent.")] = 0.05,
    quiet: QuietOpt = False,
) -> None:
    """Estimate which candidates a suspect was merged from, with weights, residual and per-layer evidence.

    JSON: a list of {model, base, parents: [{name, weight}], residual, layers}.
    """
    from lineage.attribute.nnls import AttributionOptions, attribute_paths
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.pipeline import FingerprintOptions

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    options = FingerprintOptions(device=device.value)
    with progress_bar(total=0, desc="fingerprint", disable=quiet) as bar:
        results, failures = attribute_paths(
            suspects,
            candidates,
            options=options,
            cache=FingerprintCache(cache),
            attribution=AttributionOptions(min_weight=min_weight),
            on_fingerprint=lambda: bar.update(1),
        )
    if fmt == "json":
        typer.echo(json.dumps([r.as_json() for r in results], indent=2))
    for r in results if fmt != "json" else []:
        parents = ", ".join(f"{p.name} {p.weight:.3f}" for p in r.parents) or "(none found)"
        typer.echo(f"{r.model}: base={r.base or '-'}  parents: {parents}  residual={r.residual:.3f}")
        for ev in r.layers:
            weights = " ".join(f"{w:.3f}" for w in ev.weights)
            typer.echo(f"    layer {ev.layer:>3}: weights {weights}  residual {ev.residual:.3f}")
    for name, error in failures:
        typer.echo(f"error: {name}: {error}", err=True)
    if failures:
        raise typer.Exit(1)
