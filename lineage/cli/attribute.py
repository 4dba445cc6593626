"""`lineage attribute`: name the parents of a merged suspect and estimate their weights."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    REFERENCE_KINDS,
    CacheDirOpt,
    DeviceChoice,
    DeviceOpt,
    KeyOpt,
    ModelsArg,
    NoVerifyOpt,
    QuietOpt,
    ThreadsOpt,
    check_device,
    use_threads,
)
from lineage.cli._progress import ScanProgress


class AttributeFormat(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add the `attribute` command to `app`."""
    app.command("attribute")(attribute)


def attribute(
    suspects: ModelsArg,
    candidates: Annotated[
        Path,
        typer.Option(
            "--candidates", metavar="CANDIDATES", help=f"{REFERENCE_KINDS} Rows without role=base are the parents."
        ),
    ],
    fmt: Annotated[AttributeFormat, typer.Option("--format", "-f", help="One block per suspect, or JSON.")] = (
        AttributeFormat.table
    ),
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    min_weight: Annotated[float, typer.Option(metavar="WEIGHT", help="Smallest weight reported as a parent.")] = 0.05,
    no_verify: NoVerifyOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Estimate which candidates a suspect was merged from, with weights, residual and per-layer evidence.

    JSON: a list of {model, path, status, error, base, parents: [{name, weight}], residual, layers}, one per
    suspect given; one that could not be read has status 'error' and its message. Exit code 1 when any
    model (suspect or candidate) failed.
    """
    use_threads(threads)
    from lineage.attribute.nnls import Attribution, AttributionOptions, attribute_rows
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.pipeline import FingerprintOptions

    check_device(device)
    options = FingerprintOptions(device=device.value, key=key)
    with ScanProgress("fingerprint", disable=quiet) as bars:
        rows, failures = attribute_rows(
            suspects, candidates, options=options, cache=FingerprintCache(cache),
            attribution=AttributionOptions(min_weight=min_weight), progress=bars, verify_pack=not no_verify,
        )  # fmt: skip
    if fmt is AttributeFormat.json:
        typer.echo(json.dumps([r.as_json() if isinstance(r, Attribution) else r for r in rows], indent=2))
    for r in rows if fmt is AttributeFormat.table else []:
        if not isinstance(r, Attribution):
            typer.echo(f"{r['model']}: error: {r['error']}  ({r['path']})")
            continue
        parents = ", ".join(f"{p.name} {p.weight:.3f}" for p in r.parents) or "(none found)"
        typer.echo(f"{r.model}: base={r.base or '-'}  parents: {parents}  residual={r.residual:.3f}  ({r.path})")
        for ev in r.layers:
            weights = " ".join(f"{w:.3f}" for w in ev.weights)
            typer.echo(f"    layer {ev.layer:>3}: weights {weights}  residual {ev.residual:.3f}")
    for name, error in failures:
        typer.echo(f"error: {error}" if name in error else f"error: {name}: {error}", err=True)
    if failures:
        raise typer.Exit(1)
