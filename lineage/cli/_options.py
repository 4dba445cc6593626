"""Option aliases shared by several commands (typer `Annotated` types)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Method(str, Enum):
    lineage = "lineage"
    tensorguard = "tensorguard"


class ExecutorChoice(str, Enum):
    local = "local"
    process = "process"
    ray = "ray"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where probes run: auto picks CUDA when present.")]
OutDirOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the files this command writes.")]
MethodOpt = Annotated[Method, typer.Option("--method", help="lineage (ours, default) or the published tensorguard.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
BaseOpt = Annotated[
    Path | None,
    typer.Option("--base", help="Base model folder of LoRA adapter folders (else found by the references' hub_id)."),
]
ExecutorOpt = Annotated[
    ExecutorChoice,
    typer.Option(
        "--executor",
        help="Where models are fingerprinted: local (one after another), process (--jobs worker processes), "
        "ray (one task per model on a Ray cluster; needs the ray extra of lineage).",
    ),
]
JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", min=1, help="Models fingerprinted at once (process: CPU count; ray: 2 per cluster GPU or CPU)."
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="Ray cluster to join (ray://host:10001, auto); a local one is started without it."
    ),
]


def executor_options(executor: ExecutorChoice, jobs: int | None, ray_address: str | None):  # noqa: ANN201 - lazy import
    """The library's `ExecutorOptions` from the shared executor options."""
    from lineage.jobs.executors import ExecutorOptions

    if ray_address is not None and executor is not ExecutorChoice.ray:
        raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
    if jobs is not None and jobs > 1 and executor is ExecutorChoice.local:
        raise typer.BadParameter(
            "--jobs needs --executor process (or ray): local runs one model at a time", param_hint="--jobs"
        )
    return ExecutorOptions(kind=executor.value, jobs=jobs, ray_address=ray_address)
