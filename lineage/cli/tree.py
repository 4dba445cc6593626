"""`lineage tree`: the model tree recovered from weights alone (edges, direction, relation, licences)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    MODEL_KINDS,
    REFERENCE_KINDS,
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
from lineage.cli.classify import scan_options

ModelsArg = Annotated[
    list[Path],
    typer.Argument(metavar="MANIFEST | MODEL...", help=f"A manifest CSV, or {MODEL_KINDS}.", show_default=False),
]
TreeReferenceOpt = Annotated[
    Path | None,
    typer.Option("--reference", "-r", metavar="REFERENCES",
                 help=f"{REFERENCE_KINDS} Its models join the tree (their hub_id and license columns count)."),
]  # fmt: skip
TreeAlphaOpt = Annotated[
    float,
    typer.Option("--alpha", metavar="Q", help="Benjamini-Hochberg's level across the pairs tested (edge FDR)."),
]
NeighboursOpt = Annotated[
    int, typer.Option("--neighbours", metavar="K", help="Nearest neighbours per model tested as candidate pairs.")
]


def register(app: typer.Typer) -> None:
    """Add the `tree` command to `app`."""
    app.command("tree")(tree)


def tree(
    models: ModelsArg,
    reference: TreeReferenceOpt = None,
    out: OutDirOpt = None,
    force: ForceOpt = False,
    alpha: TreeAlphaOpt = 0.001,
    neighbours: NeighboursOpt = 16,
    fmt: FormatOpt = OutputFormat.table,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    no_verify: NoVerifyOpt = False,
    verify_weights: VerifyWeightsOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Recover the model tree from the weights alone: who was made from whom, how, and with what p-value.

    Every model is paired with its nearest neighbours (compact vectors); the weight test runs on the pairs a
    spanning tree could take, with Benjamini-Hochberg at --alpha across the pairs tested. Merges are found by
    least squares on the parents' weights; each edge gets a direction (from quantisation, pruning, up-scaling,
    merges, casts, disguises and the growth of the weights, or "undirected") and a relation (finetune,
    adapter, merge, quantized, pruned, upscaled, vocabulary-edited, disguised).

    --out DIR writes tree.json, model-cards/<model>.yaml (base_model, base_model_relation), tree.png,
    tree.svg and report.html. A model whose licence differs from the one it inherits from its root, or whose
    declared base_model the weights contradict, is flagged. Exit code 1 when a model failed.
    """
    use_threads(threads)
    from dataclasses import replace

    from lineage.jobs.tree import tree_job
    from lineage.report.destination import check_out_folder, write_folder
    from lineage.tree import TreeOptions

    if out is not None:
        check_out_folder(out, force=force)  # before any work
    options = scan_options(
        Method.lineage, "calibrated", device, cache, no_cache, no_verify=no_verify, key=key,
        verify_weights=verify_weights,
    )  # fmt: skip
    options = replace(options, executor=executor_options(executor, jobs, ray_address))
    try:
        tree_options = TreeOptions(alpha=alpha, neighbours=neighbours)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    source = models[0] if len(models) == 1 and models[0].suffix.lower() == ".csv" else list(models)
    with ScanProgress("fingerprint", disable=quiet) as bars:
        result = tree_job(source, options, tree_options, references=reference, progress=bars)
    _print(result, fmt)
    if out is not None:
        from lineage.report.tree import write_tree_report

        write_folder(out, lambda folder: write_tree_report(result, folder), force=force)
        typer.echo(f"wrote {out}", err=True)
    for name, error in result.failed:
        typer.echo(f"error: {error}" if name in error else f"error: {name}: {error}", err=True)
    if result.failed:
        raise typer.Exit(1)


def _print(result, fmt: OutputFormat) -> None:  # noqa: ANN001 - a TreeResult
    from lineage.report.tables import to_json

    if fmt is OutputFormat.json:
        typer.echo(to_json(result.to_dict()))
        return
    edges = result.tree.edges
    if fmt is OutputFormat.csv:
        typer.echo("parent,child,relation,direction,direction_confidence,log10_p,distance")
        for e in edges:
            typer.echo(f"{e.parent},{e.child},{e.relation},{e.direction},{e.direction_confidence},"
                       f"{e.log10_p:.1f},{e.distance:.4f}")  # fmt: skip
        return
    from lineage.report.numbers import format_p

    width = max([len(e.parent) for e in edges] + [6])
    for e in edges:
        arrow = "->" if e.direction == "directed" else "--"
        typer.echo(f"{e.parent:<{width}} {arrow} {e.child}  {e.relation}  p {format_p(e.p_value, e.log10_p)}"
                   f"  direction {e.direction_confidence:.2f}")  # fmt: skip
    s = result.summary
    typer.echo("")
    typer.echo(f"{s['fingerprinted']} models, {s['edges']} edges, {s['roots']} roots, {s['undirected']} undirected; "
               f"{s['tested']} weight tests on {s['candidates']} candidate pairs, Benjamini-Hochberg at "
               f"{s['alpha']}")  # fmt: skip
    for name in s["license_conflicts"]:
        c = result.checks[name]
        typer.echo(f"licence: {name} declares {c.licence}, inherits {', '.join(x for x in c.inherited_licences if x)}")
    for name in s["declared_contradicted"]:
        typer.echo(f"declared: {name}'s base_model is contradicted by the weights")
