"""`lineage verify`: check each model's declared base against what its weights say.

Every model given is an outcome in every format (one that could not be read has status `error`, in the
ML-BOM a component with the error as a property). Exit codes as modelscan's: 0 every model consistent,
1 a finding (contradicted, undeclared, unverifiable), 2 an error (a model or a reference could not be
read, a bad manifest).
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    AlphaOpt,
    BaseOpt,
    CacheDirOpt,
    DeviceChoice,
    DeviceOpt,
    ForceOpt,
    KeyOpt,
    Method,
    MethodOpt,
    ModelsArg,
    NoCacheOpt,
    NoVerifyOpt,
    QuietOpt,
    ReferenceOpt,
    ThreadsOpt,
    VerifyWeightsOpt,
    use_threads,
)
from lineage.cli._progress import ScanProgress
from lineage.decide.verdict import DEFAULT_ALPHA
from lineage.errors import LineageError

EXIT_FINDING, EXIT_ERROR = 1, 2


class VerifyFormat(str, Enum):
    table = "table"
    json = "json"
    cyclonedx = "cyclonedx"
    csv = "csv"


def register(app: typer.Typer) -> None:
    """Add the `verify` command to `app`."""
    app.command("verify")(verify)


def verify(
    models: ModelsArg,
    reference: ReferenceOpt,
    fmt: Annotated[VerifyFormat, typer.Option("--format", "-f", help="table, json, csv or cyclonedx (ML-BOM).")] = (
        VerifyFormat.table
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write the report to this file.")
    ] = None,
    method: MethodOpt = Method.lineage,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    alpha: AlphaOpt = DEFAULT_ALPHA,
    base: BaseOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    no_verify: NoVerifyOpt = False,
    verify_weights: VerifyWeightsOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
) -> None:
    """Check each model's declared base against the base its weights derive from.

    Declarations: model card base_model, adapter_config.json, mergekit_config.yml, GGUF general.base_model.

    consistent: declared = found, or nothing declared and nothing found.

    contradicted: declared X, the weights say Y, only related, or unknown.

    undeclared: derived from X, nothing declared. unverifiable: the declared model is not in the manifest.

    A reference checked against itself is consistent however it is given (manifest, pack, builtin).
    error: the model could not be read; it is still a row (an ML-BOM component with the error).

    A model card whose `license` differs from the one its base carries (the reference's `license` column) is
    flagged (`license_conflict`; a line under the table, a property of the ML-BOM) and counts as a finding.

    Exit code 0 all consistent, 1 a finding, 2 an error.
    """
    use_threads(threads)
    from lineage.cli.classify import scan_options
    from lineage.jobs.verify import verify_paths
    from lineage.report.destination import check_out_file, write_file

    try:
        if out is not None:
            check_out_file(out, force=force)  # before any work
        options = scan_options(
            method, "calibrated", device, cache, no_cache, alpha, no_verify, key, verify_weights
        )
        with ScanProgress("fingerprint", disable=quiet) as bars:
            result = verify_paths(models, reference, options, bars, base=base)
        text = _render(result, fmt)
    except (LineageError, ValueError) as exc:
        if os.environ.get("LINEAGE_DEBUG"):
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if out is not None:
        write_file(out, text + "\n")
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text)
    for name, error in result.errors:
        typer.echo(f"error: {error}" if name in error else f"error: {name}: {error}", err=True)
    if result.errors:
        raise typer.Exit(EXIT_ERROR)
    if any(o.is_finding or o.license_conflict for o in result.outcomes):
        raise typer.Exit(EXIT_FINDING)


def _render(result, fmt: VerifyFormat) -> str:  # noqa: ANN001 - a VerifyResult, imported lazily
    if fmt is VerifyFormat.cyclonedx:
        from lineage.verify.bom import to_cyclonedx

        return to_cyclonedx(result)
    if fmt is VerifyFormat.json:
        return json.dumps([o.to_dict() for o in result.outcomes], indent=2)
    from lineage.report.tables import display_path

    rows = [(o.model, o.status, ", ".join(o.declaration.bases) or "-",
             (o.weights.derived_from if o.weights else None) or "-", display_path(o.path), o.reason)
            for o in result.outcomes]  # fmt: skip
    head = ("model", "status", "declared", "derived from", "path", "why")
    if fmt is VerifyFormat.csv:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([h.replace(" ", "_") for h in head])
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in (head, *rows)]
    lines += [f"licence: {o.model} declares {o.license}, but its base's is {o.inherited_license}"
              for o in result.outcomes if o.license_conflict]  # fmt: skip
    return "\n".join(lines)
