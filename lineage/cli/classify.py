"""`lineage classify` and `lineage distance`: verdicts and distance matrices for models on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    MODEL_KINDS,
    AlphaOpt,
    BaseOpt,
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
    ModelsArg,
    NoCacheOpt,
    NoVerifyOpt,
    OutDirOpt,
    OutputFormat,
    QuietOpt,
    RayAddressOpt,
    ReferenceOpt,
    ThreadsOpt,
    VerifyWeightsOpt,
    check_device,
    executor_options,
    use_threads,
    verify_weights_setting,
)
from lineage.cli._progress import ScanProgress
from lineage.decide.verdict import DEFAULT_ALPHA

UnknownOpt = Annotated[
    str,
    typer.Option(
        "--unknown",
        metavar="RULE",
        help="When a model is 'unknown': calibrated (from the references' cross-family distances), "
        "paper (tensorguard's fixed 7), off, or a number (a fixed distance threshold).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the `classify` and `distance` commands to `app`."""
    app.command("classify")(classify)
    app.command("distance")(distance)


def parse_unknown(text: str) -> str | float:
    """The `--unknown` value (`lineage.decide.unknown.parse_unknown_rule`), refused as a usage error."""
    from lineage.decide.unknown import parse_unknown_rule

    try:
        return parse_unknown_rule(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--unknown") from None


def scan_options(  # noqa: ANN201 - ScanOptions, imported lazily
    method: Method,
    unknown: str,
    device: DeviceChoice,
    cache: Path | None,
    no_cache: bool,
    alpha: float = DEFAULT_ALPHA,
    no_verify: bool = False,
    key: str | None = None,
    verify_weights: bool | None = None,
):
    """The library's options from the shared command-line options (after checking the device is here).

    `verify_weights` None takes `$LINEAGE_VERIFY_WEIGHTS` (the setting of a hub-wide scan's machine)."""
    from lineage.jobs.options import ScanOptions

    check_device(device)
    return ScanOptions(
        method=method.value,
        unknown=parse_unknown(unknown),
        alpha=alpha,
        device=device.value,
        cache_dir=cache,
        use_cache=not no_cache,
        verify_packs=not no_verify,
        key=key,
        verify_weights=verify_weights_setting() if verify_weights is None else verify_weights,
    )


def classify(
    suspects: ModelsArg,
    reference: ReferenceOpt,
    method: MethodOpt = Method.lineage,
    fmt: FormatOpt = OutputFormat.table,
    out: OutDirOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    unknown: UnknownOpt = "calibrated",
    alpha: AlphaOpt = DEFAULT_ALPHA,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    no_verify: NoVerifyOpt = False,
    verify_weights: VerifyWeightsOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
    base: BaseOpt = None,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Give each suspect a verdict: derived from a reference base, related to a family, or unknown.

    derived: the weights descend from the base (the derivation test's p-value, corrected for the number of
    references, below --alpha). related: not derived, but of a reference's family (shared tokenizer
    geometry, another size). unknown: farther than the calibrated family threshold from every reference.
    Each verdict depends only on the suspect and the references, never on the other suspects.

    Every model given is a row of the output, in every format: one that failed has status 'error' and its
    message. --out DIR also writes results.csv, results.parquet and results.json. Exit code 1 when any
    model (suspect or reference) failed.
    """
    use_threads(threads)
    from dataclasses import replace

    from lineage.jobs.paths import classify_paths
    from lineage.report.destination import check_out_folder, write_folder
    from lineage.report.tables import format_results

    if out is not None:
        check_out_folder(out, force=force)
    options = scan_options(method, unknown, device, cache, no_cache, alpha, no_verify, key, verify_weights)
    options = replace(options, executor=executor_options(executor, jobs, ray_address))
    with ScanProgress("fingerprint", disable=quiet) as bars:
        result = classify_paths(suspects, reference, options, progress=bars, base=base)
    typer.echo(format_results(result.rows, fmt.value).rstrip("\n"))
    if out is not None:
        from lineage.report.writers import write_results

        write_folder(out, lambda folder: write_results(result.rows, folder), force=force)
        typer.echo(f"wrote {out}/ (results.csv, results.parquet, results.json)", err=True)
    fail_on(result.failures)


def distance(
    models: Annotated[
        list[Path], typer.Argument(metavar="MODEL...", help=f"Two or more models: {MODEL_KINDS}.")
    ],
    method: MethodOpt = Method.lineage,
    fmt: FormatOpt = OutputFormat.table,
    out: OutDirOpt = None,
    force: ForceOpt = False,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the pairwise distance matrix of the models (0 = the same model).

    lineage: sketch distances in [0, 2], about 1 for unrelated models.

    tensorguard: the paper's features standardised over the models given: meaningful only among many.

    Models that share a name are told apart by their folders. --out DIR also writes distances.csv and
    distances.parquet.
    """
    use_threads(threads)
    from lineage.jobs.paths import distance_paths
    from lineage.report.destination import check_out_folder, write_folder
    from lineage.report.tables import format_matrix

    if out is not None:
        check_out_folder(out, force=force)
    if len(models) < 2:
        raise typer.BadParameter("give at least two models to compare", param_hint="MODEL...")
    options = scan_options(method, "off", device, cache, no_cache, key=key)
    with ScanProgress("fingerprint", disable=quiet) as bars:
        names, matrix, failures = distance_paths(models, options, bars)
    typer.echo(format_matrix(names, matrix, fmt.value, method.value).rstrip("\n"))
    if out is not None:
        from lineage.report.writers import write_matrix

        write_folder(out, lambda folder: write_matrix(names, matrix, folder), force=force)
        typer.echo(f"wrote {out}/ (distances.csv, distances.parquet)", err=True)
    fail_on(failures)


def fail_on(failures: list) -> None:
    """Name every failed model on stderr and exit 1 (the others were still processed)."""
    for f in failures:
        typer.echo(f"error: {f.error}" if f.name in (f.error or "") else f"error: {f.name}: {f.error}", err=True)
    if failures:
        raise typer.Exit(1)
