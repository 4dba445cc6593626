"""`lineage scan`: the bulk job over a manifest (the built-in demo catalog when none is given)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    DeviceChoice,
    DeviceOpt,
    ExecutorChoice,
    ExecutorOpt,
    FormatOpt,
    JobsOpt,
    Method,
    MethodOpt,
    OutDirOpt,
    OutputFormat,
    QuietOpt,
    RayAddressOpt,
    executor_options,
)
from lineage.cli._progress import ScanProgress
from lineage.cli.classify import CacheDirOpt, NoCacheOpt, UnknownOpt, scan_options


def register(app: typer.Typer) -> None:
    """Add the `scan` command to `app`."""
    app.command("scan")(scan)


def scan(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None,
        typer.Argument(help="Manifest CSV: name,path,family and optional base,role,derivation,parents."),
    ] = None,
    method: MethodOpt = Method.lineage,
    fmt: FormatOpt = OutputFormat.table,
    out: OutDirOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    unknown: UnknownOpt = "calibrated",
    quiet: QuietOpt = False,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Fingerprint every model of a manifest (cached), classify the non-base rows, score against the labels.

    Without MANIFEST: the 58 published TensorGuard fingerprints. They hold only the paper's 15 features, no
    sketches and no weight responses, so no derivation test can run on them: unless --method or --unknown is
    given, the demo runs the paper's own recipe (--method tensorguard --unknown off) and reproduces its table.

    --out DIR writes results and distances (CSV, Parquet), summary.json, map.png, heatmap.png and report.html.

    --executor process --jobs N fingerprints on N local worker processes.

    --executor ray runs one task per model on a Ray cluster (a GPU each when it has them).

    Results equal a serial scan's; a dead worker costs its model a retry; a restarted scan resumes from the cache.

    Exit code 1 when any model failed (the others are still scanned).
    """
    from dataclasses import replace

    from lineage.jobs.scan import scan as run_scan
    from lineage.report.summary import summary_text
    from lineage.report.tables import format_results, to_json

    if manifest is None:
        def defaulted(name: str) -> bool:
            # By name: typer ships its own copy of click, whose ParameterSource is not click's.
            return getattr(ctx.get_parameter_source(name), "name", None) in (None, "DEFAULT", "DEFAULT_MAP")

        if defaulted("method") and defaulted("unknown"):
            method, unknown = Method.tensorguard, "off"
            typer.echo(
                "demo: the published TensorGuard fingerprints hold only the paper's 15 features (no sketches, no "
                "weight responses), so the paper's recipe is run: --method tensorguard --unknown off",
                err=True,
            )
    options = replace(
        scan_options(method, unknown, device, cache, no_cache), executor=executor_options(executor, jobs, ray_address)
    )
    with ScanProgress("fingerprint", disable=quiet) as bars:
        result = run_scan(manifest, options, progress=bars)
    if fmt is OutputFormat.json:
        typer.echo(to_json({"summary": result.summary, "results": result.rows}))
    elif fmt is OutputFormat.csv:
        typer.echo(format_results(result.rows, "csv").rstrip("\n"))
    else:
        typer.echo(format_results(result.rows, "table"))
        typer.echo("")
        typer.echo(summary_text(result.summary))
    if out is not None:
        from lineage.report.writers import write_report

        write_report(result, out)
    for name, error in result.summary["errors"].items():
        typer.echo(f"error: {name}: {error}", err=True)
    if result.failed:
        raise typer.Exit(1)
