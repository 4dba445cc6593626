"""`lineage fingerprint`: fingerprint model folders, one file per model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    BaseOpt,
    DeviceChoice,
    DeviceOpt,
    ExecutorChoice,
    ExecutorOpt,
    JobsOpt,
    OutDirOpt,
    QuietOpt,
    RayAddressOpt,
    executor_options,
)
from lineage.cli._progress import ScanProgress
from lineage.fingerprint.paths import default_fingerprint_dir


def register(app: typer.Typer) -> None:
    """Add the `fingerprint` command to `app`."""
    app.command("fingerprint")(fingerprint)


def fingerprint(
    paths: Annotated[list[Path], typer.Argument(help="Model folders, or folders of model folders.")],
    out: OutDirOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    seed: Annotated[int, typer.Option(help="Probe seed; fingerprints compare only at equal seeds.")] = 0,
    anchors: Annotated[int, typer.Option(help="Embedding-anchored probes per model (sketches are P x P).")] = 64,
    quiet: QuietOpt = False,
    base: BaseOpt = None,
    executor: ExecutorOpt = ExecutorChoice.local,
    jobs: JobsOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Fingerprint each model and write <out>/<name>.fingerprint.safetensors; one summary line per model.

    Exit code 1 when any model failed (the others are still fingerprinted).
    """
    from lineage.fingerprint.batch import fingerprint_paths
    from lineage.fingerprint.cache import expand_inputs
    from lineage.fingerprint.pipeline import FingerprintOptions
    from lineage.io.adapter import adapter_bases

    if fmt not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    options = FingerprintOptions(device=device.value, seed=seed, anchors=anchors)
    out_dir = out or default_fingerprint_dir()
    models = expand_inputs(paths)
    where = executor_options(executor, jobs, ray_address)
    with adapter_bases(base), ScanProgress("fingerprint", disable=quiet) as bars:
        done = []

        def tick(outcome) -> None:  # noqa: ANN001 - a FingerprintOutcome
            done.append(outcome)
            bars.finished(outcome)
            bars(len(done), len(models), outcome.name)

        outcomes = fingerprint_paths(models, options, out_dir, on_model=tick, executor=where, progress=bars)
    if fmt == "json":
        typer.echo(json.dumps([_as_json(o) for o in outcomes], indent=2))
    else:
        for o in outcomes:
            typer.echo(_as_line(o))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        for o in failed if fmt == "json" else []:
            typer.echo(f"error: {o.error}", err=True)
        raise typer.Exit(1)


def _as_line(o) -> str:  # noqa: ANN001
    if not o.ok:
        return f"FAILED  {o.name}: {o.error}"
    s = o.fingerprint.summary
    params = f"{s.num_parameters / 1e6:.1f}M" if s.num_parameters < 1e9 else f"{s.num_parameters / 1e9:.2f}B"
    return (
        f"ok  {o.name}  {s.architecture}  layers={s.num_layers}  hidden={s.hidden_size}  vocab={s.vocab_size}  "
        f"params={params}  dtypes={','.join(s.dtypes)}  {o.seconds:.1f}s  -> {o.file}"
    )


def _as_json(o) -> dict:  # noqa: ANN001
    doc = {"model": o.name, "path": str(o.path), "ok": o.ok, "seconds": round(o.seconds, 3), "error": o.error}
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
