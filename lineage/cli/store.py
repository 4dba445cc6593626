"""`lineage store build|classify`: a million fingerprints in one memory-mapped store, classified in bulk."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import NoVerifyOpt, QuietOpt, ReferenceOpt
from lineage.cli._progress import progress_bar
from lineage.cli.classify import UnknownOpt, parse_unknown


def build(
    sources: Annotated[
        list[Path],
        typer.Argument(
            metavar="SOURCE...",
            help="Fingerprint cache folders ($LINEAGE_CACHE), folders of fingerprint files, or files.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="The store folder (created, or extended).")
    ],
    dim: Annotated[int, typer.Option("--dim", metavar="N", help="Compact vector length (a new store only).")] = 256,
    depth_bins: Annotated[
        int, typer.Option("--depth-bins", metavar="N", help="Depth groups of the layer circuits.")
    ] = 4,
    quiet: QuietOpt = False,
) -> None:
    """Add every fingerprint under SOURCES to a store of compact vectors (keys already there are skipped).

    Fingerprints that cannot be added (unreadable, without sketches, of other probe settings than the
    store's) are left out, each named on stderr with the reason, and counted.
    """
    from lineage.store import EmbeddingOptions, build_store

    with progress_bar(total=0, desc="store", disable=quiet) as bar:
        report = build_store(
            sources, out, EmbeddingOptions(dim=dim, depth_bins=depth_bins), progress=lambda n, _: bar.update(1)
        )
    for note in report.notes:
        typer.echo(f"left out: {note}", err=True)
    typer.echo(
        f"{report.added} added, {report.present} already present, {report.incompatible} left out; "
        f"{out} holds {report.total}"
    )


def classify(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The store folder.")],
    reference: ReferenceOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json (one object per line).")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="File for the rows (stdout when not given).")
    ] = None,
    unknown: UnknownOpt = "calibrated",
    margin: Annotated[
        float,
        typer.Option(
            "--margin", metavar="SIMILARITY", help="Similarity margin under which a verdict is flagged needs_exact."
        ),
    ] = 0.1,
    no_verify: NoVerifyOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Nearest reference of every fingerprint in the store, by compact vectors (approximate).

    Rows: model, nearest, similarity (approximate), family ('unknown' beyond the threshold), nearest_family,
    needs_exact (close to the threshold or to another family: run lineage classify on it), status, path
    (the fingerprint file the row came from, or cache:KEY for a fingerprint cache entry).
    """
    if fmt not in ("csv", "json"):
        raise typer.BadParameter("use csv or json", param_hint="--format")
    from lineage.store import Store, classify_store
    from lineage.store.nearest import VERDICT_FIELDS, load_references, store_threshold, verdict_rows

    rule = parse_unknown(unknown)
    opened = Store(store)
    refs, distances = load_references(reference, opened.info.embedding, opened.info.settings, verify=not no_verify)
    threshold = store_threshold(rule, distances, refs.families)
    with progress_bar(total=0, desc="classify", disable=quiet) as bar:
        verdicts = classify_store(opened, refs, threshold, margin, progress=lambda done, total: _tick(bar, done, total))
    rows = verdict_rows(opened, refs, verdicts)
    fh = out.open("w", newline="", encoding="utf-8") if out is not None else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(fh, fieldnames=list(VERDICT_FIELDS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    finally:
        if out is not None:
            fh.close()
    flagged = int(verdicts.needs_exact.sum())
    typer.echo(
        f"{len(opened)} classified against {len(refs.names)} references; {int(verdicts.unknown.sum())} unknown, "
        f"{flagged} need an exact verdict" + (f" (threshold {threshold:.3f})" if threshold is not None else ""),
        err=True,
    )


def _tick(bar, done: int, total: int) -> None:  # noqa: ANN001 - tqdm
    bar.total = total
    bar.n = done
    bar.refresh()


def register(app: typer.Typer) -> None:
    """Add the `store` command group to `app`."""
    group = typer.Typer(
        name="store", help="Compact vectors of many fingerprints, classified in bulk.", no_args_is_help=True
    )
    group.command("build")(build)
    group.command("classify")(classify)
    app.add_typer(group, name="store")
