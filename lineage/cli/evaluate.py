"""`lineage evaluate`: the repeatable accuracy experiments (leave-one-base-out, merge attribution)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import DeviceChoice, DeviceOpt, Method, MethodOpt, QuietOpt, ThreadsOpt, use_threads
from lineage.cli._progress import progress_bar, ticker
from lineage.cli.classify import CacheDirOpt, NoCacheOpt, UnknownOpt, scan_options

ManifestArg = Annotated[Path, typer.Argument(help="Labelled manifest CSV (role and base columns).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")]


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command group to `app`."""
    group = typer.Typer(help="Repeatable accuracy experiments on a labelled manifest.", no_args_is_help=True)
    group.command("loo")(loo)
    group.command("merges")(merges)
    group.command("null")(null)
    group.command("calibration")(calibration)
    group.command("verify")(verify)
    group.command("tree")(tree)
    app.add_typer(group, name="evaluate")


def _bar(quiet: bool):  # noqa: ANN202
    return progress_bar(total=0, desc="fingerprint", disable=quiet)


def _run(job, quiet: bool, as_json: bool, *args: object) -> dict | None:  # noqa: ANN001 - a jobs.evaluate function
    """`job(*args, progress)` under a fingerprint bar; printed as JSON when asked (then None: nothing more to say)."""
    with _bar(quiet) as bar:
        result = job(*args, ticker(bar))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return None
    return result


def loo(
    manifest: ManifestArg = Path("models_manifest.csv"),
    method: MethodOpt = Method.lineage,
    unknown: UnknownOpt = "calibrated",
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Leave each base out of the references in turn; classify it and its derivatives against the rest.

    Target: most of each left-out lineage in the right family (through the family's other sizes), none in
    a wrong family (unknown is acceptable).
    """
    use_threads(threads)
    from lineage.jobs.evaluate import leave_one_base_out

    result = _run(leave_one_base_out, quiet, as_json, manifest, scan_options(method, unknown, device, cache, no_cache))
    if result is None:
        return
    header = f"{'left out':<24} {'family':<10} {'models':>6} {'related':>8} {'wrong':>6} {'unknown':>8} {'derived':>8}"
    typer.echo(header)
    for f in result["folds"]:
        typer.echo(
            f"{f['left_out']:<24} {f['family']:<10} {f['models']:>6} {f['right']:>8} {f['wrong']:>6} "
            f"{f['unknown']:>8} {f['derived']:>8}"
        )
        for row in f["rows"]:
            if row["outcome"] != "right":
                typer.echo(f"    {row['model']}: {row['outcome']} ({row['family']}, distance {row['distance']})")
    s = result["summary"]
    typer.echo(
        f"\nleave-one-base-out ({result['method']}): {s['right_when_family_in_references']}/"
        f"{s['with_family_in_references']} right family where the family keeps a base in the references "
        f"({100 * (s['right_rate'] or 0):.1f}%); {s['unknown_when_family_missing']}/{s['without_family_in_references']}"
        f" unknown where it keeps none; {s['wrong_family']} in a wrong family; {s['derived_from_another_base']} "
        f"derived from another base (of {s['models']} models)"
    )


def null(
    manifest: ManifestArg = Path("models_manifest.csv"),
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the derivation test on every pair of a labelled catalog known to be unrelated; print its
    false-positive rate."""
    use_threads(threads)
    from lineage.jobs.evaluate import null_pairs

    options = scan_options(Method.lineage, "calibrated", device, cache, no_cache)
    result = _run(null_pairs, quiet, as_json, manifest, options)
    if result is None:
        return
    s = result["summary"]
    typer.echo(
        f"null pairs: {s['null_pairs']}; false-positive rate of 'derived' per pair at alpha {s['alpha']:g}: "
        f"{s['false_positive_rate']} (same-family pairs: {s['same_family_pairs']}, "
        f"rate {s['same_family_false_positive_rate']}); smallest p-value {s['smallest_p_value']:.3g}"
    )
    for fp in s["false_positives"]:
        typer.echo(f"    false positive: {fp}")


def calibration(
    battery: Annotated[
        Path,
        typer.Argument(metavar="BATTERY", help="Battery folder: built there first when it holds no manifest."),
    ] = Path("catalog/battery"),
    size: Annotated[str, typer.Option("--size", metavar="SIZE", help="Battery to build: full or small.")] = "full",
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Battery seed (models, data order).")] = 0,
    plot: Annotated[
        Path | None, typer.Option("--plot", metavar="PNG", help="Write the QQ plot of the null p-values here.")
    ] = None,
    no_null_pairs: Annotated[
        bool,
        typer.Option("--no-null-pairs", help="Measure the derivatives and the verdicts only: skip testing every "
                     "pair of unrelated models (quadratic: hours for the full battery on 2 busy cores)."),
    ] = False,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure `derived`: false-positive rate on known-unrelated pairs (with 95% intervals) and power.

    The battery (lineage.catalog.battery) holds models of one width and one tokenizer but no shared weights
    (random and trained, depths 2-40, Llama/Qwen2/Gemma 3/Mixtral (experts)/GPT-NeoX (LayerNorm) layouts,
    distilled students, models of a narrower width) and derivatives of four of them (fine-tune, LoRA, merges,
    int4, depth pruning and up-scaling, a vocabulary permutation, every disguise at once + int4 on the dense
    ones, and with the FFN units' signs flipped (alone and + int4), width pruning then distillation, tokenizer
    transplants at three overlaps, a transplant then rotated, a replaced or regrown embedding). Prints the
    false-positive rate of each test tier against its binomial bound, and the power of each derivation kind.
    """
    use_threads(threads)
    if plot is not None and no_null_pairs:
        raise typer.BadParameter("the QQ plot draws the null pairs' p-values: drop --no-null-pairs",
                                 param_hint="--plot")
    from lineage.catalog.battery import BLIND_SPOTS, MANIFEST, build_battery
    from lineage.jobs.calibration import calibrate, qq_plot

    manifest = battery / MANIFEST
    if not manifest.is_file():
        if not quiet:
            typer.echo(f"building the {size} battery (seed {seed}) in {battery}", err=True)
        say = None if quiet else (lambda name: typer.echo(f"  built {name}", err=True))
        build_battery(battery, size=size, seed=seed, progress=say)
    with _bar(quiet) as bar:
        options = scan_options(Method.lineage, "calibrated", device, cache, no_cache)
        result = calibrate(manifest, options, ticker(bar), blind=BLIND_SPOTS, null_pairs=not no_null_pairs)
    if plot is not None:
        qq_plot(result["p_values"], plot)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "p_values"}, indent=2))
        return
    _print_calibration(result, manifest, plot)


def _print_calibration(result: dict, manifest: Path, plot: Path | None) -> None:
    null = result["null"]
    if not null.get("measured", True):
        typer.echo(f"null pairs (models of unrelated lineages) in {manifest}: not tested (--no-null-pairs)")
        _print_tiers(result.get("tiers", []))
        _print_power(result, plot)
        return
    typer.echo(f"null pairs (models of unrelated lineages) in {manifest}: {null['pairs']}")
    typer.echo(f"  {'alpha':>6}  {'false positives':>15}  {'rate':>7}  95% interval")
    for r in null["rates"]:
        interval = f"[{r['low']:.4f}, {r['high']:.4f}]"
        typer.echo(f"  {r['alpha']:>6g}  {r['hits']:>7}/{r['n']:<7}  {r['rate']:>7.4f}  {interval}")
    _print_tiers(result.get("tiers", []))
    m = result.get("matching")
    if m and m["pairs"]:
        rule = m["rule"]
        typer.echo(
            f"  unit matching ({m['null']}: derived at >= {rule['min_agreement']:.0%} agreement and tail < "
            f"1e{rule['max_log10_tail']:g}): {m['hits']}/{m['pairs']}, rate {m['rate']:.4f}, 95% interval "
            f"[{m['interval'][0]:.4f}, {m['interval'][1]:.4f}]"
        )
        top, low = m["largest_share"][0], m["smallest_tail"][0]
        typer.echo(f"    most agreement of a null pair: {top['share']:.1%} ({top['suspect']} ~ {top['reference']}, "
                   f"{top['kind']}); smallest tail 1e{low['log10_tail']:.1f} ({low['suspect']} ~ {low['reference']})")
        wide = max(map(len, m["by_kind"]), default=0)
        for kind, k in m["by_kind"].items():
            most = f"most agreement {k['largest_share']:.1%}"
            typer.echo(f"    {kind:<{wide}} {k['pairs']:>5} pairs: {k['hits']} derived, {most}")
        for pair in m["false_positives"]:
            typer.echo(f"    false positive (unit matching): {pair}")
    typer.echo("  by kind (false positives at 0.05 / 0.01 / 0.001):")
    wide = max(map(len, null["by_kind"]), default=0)
    for kind, k in null["by_kind"].items():
        hits = " / ".join(str(r["hits"]) for r in k["rates"])
        typer.echo(f"    {kind:<{wide}} {k['pairs']:>5} pairs: {hits}")
    typer.echo("  by layout (pairs with a model of it; false positives at 0.05 / 0.01 / 0.001):")
    for family, k in null.get("by_family", {}).items():
        hits = " / ".join(str(r["hits"]) for r in k["rates"])
        typer.echo(f"    {family:<36} {k['pairs']:>5} pairs: {hits}")
    _print_power(result, plot)


def _print_power(result: dict, plot: Path | None) -> None:
    """The power tables and the verdicts (what a run without the null pairs prints too)."""
    typer.echo("power (derivatives against their base, derived at 0.05 / 0.01 / 0.001; largest log10 p):")
    # One label width for both power tables, the longest kind's (the table stays a table as kinds are added).
    wide = max(map(len, [*result["power"], *result.get("power_by_family", {})]), default=0)
    for kind, p in result["power"].items():
        typer.echo(_power_line(kind, p, wide))
    typer.echo("power by layout (blind spots aside):")
    for family, p in result.get("power_by_family", {}).items():
        typer.echo(_power_line(family, p, wide))
    v = result["verdicts"]
    if v:
        typer.echo(
            f"verdicts against the {v['references']} bases at alpha {v['alpha']:g}: "
            f"{len(v['independents_derived'])} of {v['independents']} independent models called derived; "
            f"{v['derivatives_right']}/{v['derivatives']} "
            "derivatives derived from their base"
        )
        for name in v["independents_derived"]:
            typer.echo(f"    falsely derived: {name}")
        for name in v["derivatives_missed"]:
            typer.echo(f"    missed: {name}")
        if v["blind_spots"]:
            typer.echo(f"    blind spots derived: {v['blind_spots_derived']}/{v['blind_spots']}")
    if plot is not None:
        typer.echo(f"QQ plot: {plot}")


def _print_tiers(tiers: list[dict]) -> None:
    """Each test tier's false positives at each level beside the binomial bound (`within` or `OVER`)."""
    if not tiers:
        return
    alphas = [r["alpha"] for r in tiers[0]["rates"]]
    typer.echo("  per test tier: false positives / binomial bound (the count a valid test exceeds with probability 1%)")
    typer.echo(f"    {'tier':<46} {'pairs':>6}" + "".join(f"  {'at ' + format(a, 'g'):>14}" for a in alphas))
    for t in tiers:
        cells = "".join(f"  {str(r['hits']) + '/' + str(r['bound']) + (' ok' if r['within'] else ' OVER'):>14}"
                        for r in t["rates"])  # fmt: skip
        typer.echo(f"    {t['tier']:<46} {t['n']:>6}{cells}")


def _power_line(label: str, p: dict, wide: int) -> str:
    hits = " / ".join(f"{n}/{len(p['models'])}" for n in p["derived_at"].values())
    worst = max(m["log10_p"] for m in p["models"])
    note = "  (blind spot: no exact test can see it)" if p["blind_spot"] else ""
    matched = f"  unit matching {p['matching_derived']}/{len(p['models'])}" if "matching_derived" in p else ""
    return f"    {label:<{wide}} {hits:<16} {worst:8.1f}{matched}{note}"


def merges(
    manifest: ManifestArg = Path("models_manifest.csv"),
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="Catalog recipe with the true merge weights (optional).")
    ] = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Attribute every merge of the manifest (rows with two or more parents) and score parents and weights."""
    use_threads(threads)
    from lineage.jobs.evaluate import merge_attribution

    options = scan_options(Method.lineage, "off", device, cache, no_cache)
    result = _run(merge_attribution, quiet, as_json, manifest, recipe, options)
    if result is None:
        return
    for m in result["merges"]:
        found = ", ".join(f"{p['name']} {p['weight']:.3f}" for p in m["parents"]) or "-"
        mark = "ok " if m["parents_ranked_first"] else "MISS"
        err = f"  max weight error {m['max_weight_error']:.3f}" if "max_weight_error" in m else ""
        typer.echo(f"{mark} {m['model']} ({m['derivation']}): {found}  residual {m['residual']:.3f}{err}")
    s = result["summary"]
    typer.echo(f"\ntrue parents ranked first: {s['parents_ranked_first']}/{s['merges']}")
    for key, value in s.items():
        if key.startswith("max_weight_error"):
            typer.echo(f"{key}: {value}")


def verify(
    manifest: ManifestArg = Path("models_manifest.csv"),
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run `lineage verify` on every non-base model of a catalog and score each outcome against the truth."""
    use_threads(threads)
    from lineage.jobs.evaluate import declared_lineage_check

    options = scan_options(Method.lineage, "calibrated", device, cache, no_cache)
    result = _run(declared_lineage_check, quiet, as_json, manifest, options)
    if result is None:
        return
    for m in result["models"]:
        if m["outcome"] != m["expected"]:
            typer.echo(f"WRONG {m['model']}: expected {m['expected']}, got {m['outcome']} ({m['reason']})")
    for key, acc in result["summary"].items():
        typer.echo(f"{key:13s} {acc['correct']}/{acc['total']}")


def tree(
    manifest: ManifestArg = Path("models_manifest.csv"),
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Recover the tree of the manifest's models from the weights alone (no label given), then score it
    against the manifest's parents column: edge recall and precision, direction and relation accuracy on the
    recovered true edges, and every miss."""
    use_threads(threads)
    from lineage.jobs.tree import evaluate_tree
    from lineage.tree.score import score_text

    options = scan_options(Method.lineage, "calibrated", device, cache, no_cache)
    result = _run(evaluate_tree, quiet, as_json, manifest, options)
    if result is None:
        return
    typer.echo(score_text(result))
