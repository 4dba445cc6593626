"""`lineage scan`: the bulk job over a manifest or folders of models (the built-in demo catalog when none)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    MODEL_KINDS,
    REFERENCE_KINDS,
    AlphaOpt,
    CacheDirOpt,
    DeviceChoice,
    DeviceOpt,
    ExecutorChoice,
    ExecutorOpt,
    ForceOpt,
    FormatOpt,
    JobsOpt,
    KeyOpt,
    Method,
    MethodOpt,
    NoCacheOpt,
    NoVerifyOpt,
    OutDirOpt,
    OutputFormat,
    QuietOpt,
    RayAddressOpt,
    ThreadsOpt,
    VerifyWeightsOpt,
    executor_options,
    use_threads,
)
from lineage.cli._progress import ScanProgress
from lineage.cli.classify import UnknownOpt, scan_options
from lineage.decide.verdict import DEFAULT_ALPHA

InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[MANIFEST | MODEL...]",
        help="A manifest CSV (a path column; optional name, family, base, role, derivation, parents: the labels "
        f"scored when present), or {MODEL_KINDS}.",
        show_default=False,
    ),
]
ScanReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        "-r",
        metavar="REFERENCES",
        help=f"{REFERENCE_KINDS} Every model scanned is then a suspect. Without it: the manifest's role=base rows.",
    ),
]
FdrOpt = Annotated[
    float | None,
    typer.Option(
        "--fdr",
        metavar="Q",
        help="Benjamini-Hochberg across the suspects: derived only if the p-value also passes at level Q.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the `scan` command to `app`."""
    app.command("scan")(scan)


def scan(
    ctx: typer.Context,
    inputs: InputsArg = None,
    reference: ScanReferenceOpt = None,
    method: MethodOpt = Method.lineage,
    fmt: FormatOpt = OutputFormat.table,
    out: OutDirOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    no_verify: NoVerifyOpt = False,
    verify_weights: VerifyWeightsOpt = False,
    key: KeyOpt = None,
    unknown: UnknownOpt = "calibrated",
    alpha: AlphaOpt = DEFAULT_ALPHA,
    fdr: FdrOpt = None,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Fingerprint every model (cached), give each suspect its verdict, score those that carry labels.

    The models: a manifest's rows, or the models of folders (a folder of models is a batch; nothing needs a
    label). The references: the manifest's role=base rows, or --reference (a manifest, a pack or builtin).
    Labels are optional: suspects without family, base or role are given verdicts and not scored; failed
    models are rows with their error, counted apart from wrong answers.

    --alpha is the level per suspect; --fdr Q adds Benjamini-Hochberg across the suspects. The summary says
    how many false accusations those levels let through at most, in expectation.

    Without MANIFEST: the 58 published TensorGuard fingerprints. They hold only the paper's 15 features, no
    sketches and no weight responses, so no derivation test can run on them: unless --method or --unknown is
    given, the demo runs the paper's own recipe (--method tensorguard --unknown off) and reproduces its table.

    --out DIR writes results and distances (CSV, Parquet), summary.json, map.png, heatmap.png and report.html
    (verdicts first, then the heat-map, the map, and the scores when there are labels). DIR is checked before
    any work: a new folder, or one holding only a previous report (replaced as a whole); any other folder
    only with --force (the report's files then go beside its own).

    --executor process --jobs N fingerprints on N local worker processes; --executor ray runs one task per
    model on a Ray cluster (a GPU each when it has them). Results equal a serial scan's; a dead worker costs
    its model a retry; a restarted scan resumes from the cache. Exit code 1 when any model failed.
    """
    use_threads(threads)
    from dataclasses import replace

    from lineage.jobs.scan import scan as run_scan
    from lineage.report.destination import check_out_folder

    if out is not None:
        check_out_folder(out, force=force)  # before any work: a scan may run for hours
    if not inputs and reference is None:
        method, unknown = _demo(ctx, method, unknown)
    options = scan_options(method, unknown, device, cache, no_cache, alpha, no_verify, key, verify_weights)
    options = replace(options, fdr=fdr, executor=executor_options(executor, jobs, ray_address))
    with ScanProgress("fingerprint", disable=quiet) as bars:
        result = run_scan(_source(inputs), options, progress=bars, references=reference)
    _print(result, fmt)
    if out is not None:
        from lineage.report.destination import write_folder
        from lineage.report.writers import write_report

        write_folder(out, lambda folder: write_report(result, folder), force=force)
        typer.echo(f"wrote {out}/ (report.html, results, distances, summary.json, map.png, heatmap.png)", err=True)
    for name, error in result.summary["errors"].items():
        typer.echo(f"error: {error}" if name in error else f"error: {name}: {error}", err=True)
    if result.failed:
        raise typer.Exit(1)


def _source(inputs: list[Path] | None):  # noqa: ANN202 - a manifest path, model paths, or None
    """One CSV file is a manifest; anything else is models (None: the demo)."""
    if not inputs:
        return None
    if len(inputs) == 1 and inputs[0].suffix.lower() == ".csv":
        return inputs[0]
    return list(inputs)


def _demo(ctx: typer.Context, method: Method, unknown: str) -> tuple[Method, str]:
    """The demo's recipe: the paper's, unless --method or --unknown was given."""

    def defaulted(name: str) -> bool:
        # By name: typer ships its own copy of click, whose ParameterSource is not click's.
        return getattr(ctx.get_parameter_source(name), "name", None) in (None, "DEFAULT", "DEFAULT_MAP")

    if defaulted("method") and defaulted("unknown"):
        from lineage.jobs.scan import DEMO_METHOD, DEMO_UNKNOWN

        typer.echo(
            "demo: the published TensorGuard fingerprints hold only the paper's 15 features (no sketches, no "
            f"weight responses), so the paper's recipe is run: --method {DEMO_METHOD} --unknown {DEMO_UNKNOWN}",
            err=True,
        )
        return Method(DEMO_METHOD), DEMO_UNKNOWN
    return method, unknown


def _print(result, fmt: OutputFormat) -> None:  # noqa: ANN001 - a ScanResult
    from lineage.report.summary import summary_text
    from lineage.report.tables import format_results, to_json

    if fmt is OutputFormat.json:
        typer.echo(to_json({"summary": result.summary, "results": result.rows}))
    elif fmt is OutputFormat.csv:
        typer.echo(format_results(result.rows, "csv").rstrip("\n"))
    else:
        typer.echo(format_results(result.rows, "table"))
        typer.echo("")
        typer.echo(summary_text(result.summary))
