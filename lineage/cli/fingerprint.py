"""`lineage fingerprint`: fingerprint models, one file per model, through the fingerprint cache."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    MODEL_KINDS,
    BaseOpt,
    CacheDirOpt,
    DeviceChoice,
    DeviceOpt,
    ExecutorChoice,
    ExecutorOpt,
    JobsOpt,
    KeyOpt,
    NoCacheOpt,
    OutDirOpt,
    QuietOpt,
    RayAddressOpt,
    ThreadsOpt,
    VerifyWeightsOpt,
    check_device,
    executor_options,
    use_threads,
)
from lineage.cli._progress import ScanProgress


class LineFormat(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add the `fingerprint` command to `app`."""
    app.command("fingerprint")(fingerprint)


def fingerprint(
    paths: Annotated[list[Path], typer.Argument(metavar="MODEL...", help=f"The models: {MODEL_KINDS}.")],
    out: OutDirOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    fmt: Annotated[LineFormat, typer.Option("--format", "-f", help="One line per model, or JSON.")] = (
        LineFormat.table
    ),
    seed: Annotated[
        int, typer.Option(metavar="N", help="Probe seed; fingerprints compare only at equal seeds.")
    ] = 0,
    anchors: Annotated[
        int, typer.Option(metavar="N", help="Embedding-anchored probes per model (sketches are N x N).")
    ] = 64,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    verify_weights: VerifyWeightsOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
    base: BaseOpt = None,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Fingerprint each model (safetensors folder, GGUF file or split set, PEFT adapter, hf:// model).

    Writes DIR/<name>.fingerprint.safetensors per model with --out (models of one name in a batch are told
    apart by their folders: org1__llama, org2__llama); without --out, into the cache folder's
    fingerprints/ as <name>-<hash of the model's path>, so two models of one name never share a file. A
    model fingerprinted before, unchanged, comes from the fingerprint cache (--no-cache: fingerprint again).
    One summary line per model.

    Exit code 1 when any model failed (the others are still fingerprinted).
    """
    use_threads(threads)
    from lineage.fingerprint.batch import fingerprint_paths
    from lineage.fingerprint.cache import FingerprintCache
    from lineage.fingerprint.inputs import expand_inputs
    from lineage.fingerprint.paths import default_fingerprint_dir
    from lineage.fingerprint.pipeline import FingerprintOptions
    from lineage.report.destination import check_files_folder

    check_device(device)
    if out is not None:
        check_files_folder(out)  # before any work
    options = FingerprintOptions(device=device.value, seed=seed, anchors=anchors, key=key)
    models = expand_inputs(paths)
    where = executor_options(executor, jobs, ray_address)
    store = None if no_cache else FingerprintCache(cache, verify_weights=verify_weights)
    with ScanProgress("fingerprint", disable=quiet) as bars:
        done = []

        def tick(outcome) -> None:  # noqa: ANN001 - a ModelOutcome
            done.append(outcome)
            bars.finished(outcome)
            bars(len(done), len(models), outcome.name)

        outcomes = fingerprint_paths(
            models, options, out or default_fingerprint_dir(), on_model=tick, executor=where, progress=bars,
            cache=store, keyed_files=out is None, base=base,
        )  # fmt: skip
    _print(outcomes, fmt)


def _print(outcomes: list, fmt: LineFormat) -> None:
    """One line per model (or JSON); each failure also as one `error:` line on stderr; exit 1 when any failed."""
    if fmt is LineFormat.json:
        typer.echo(json.dumps([_as_json(o) for o in outcomes], indent=2))
    else:
        for o in outcomes:
            typer.echo(_as_line(o))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        for o in failed:
            typer.echo(f"error: {o.error}", err=True)
        raise typer.Exit(1)


def _as_line(o) -> str:  # noqa: ANN001
    if not o.ok:
        return f"FAILED  {o.name}: {o.error}"
    s = o.fingerprint.summary
    params = f"{s.num_parameters / 1e6:.1f}M" if s.num_parameters < 1e9 else f"{s.num_parameters / 1e9:.2f}B"
    return (
        f"ok  {o.name}  {s.architecture}  layers={s.num_layers}  hidden={s.hidden_size}  vocab={s.vocab_size}  "
        f"params={params}  dtypes={','.join(s.dtypes)}  {o.how or 'fingerprinted'}  {o.seconds:.1f}s  -> {o.file}"
    )


def _as_json(o) -> dict:  # noqa: ANN001
    doc = {
        "model": o.name,
        "path": str(o.path),
        "ok": o.ok,
        "status": "ok" if o.ok else "error",
        "how": o.how,
        "seconds": round(o.seconds, 3),
        "error": o.error,
    }
    if o.ok:
        s = o.fingerprint.summary
        doc.update(
            file=str(o.file),
            architecture=s.architecture,
            num_layers=s.num_layers,
            hidden_size=s.hidden_size,
            vocab_size=s.vocab_size,
            num_parameters=s.num_parameters,
            dtypes=list(s.dtypes),
            header_sha256=s.header_sha256,
            device=o.fingerprint.device,
        )
    return doc
