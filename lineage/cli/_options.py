"""Option aliases shared by several commands (typer `Annotated` types), each with a metavar naming the thing."""

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


#: What a model argument takes, in the words of every command's help.
MODEL_KINDS = (
    "model folders (safetensors, sharded or not), GGUF files (or split sets), PEFT adapter folders, "
    "hf://org/name[@revision], fingerprint files, or folders of any of these (a batch)"
)
#: What `--reference` takes.
REFERENCE_KINDS = (
    "The known models: a manifest CSV (a path column; role=base rows are the references, all rows without a "
    "role column), a reference pack folder (lineage refs build), or 'builtin' (the built-in pack of the real "
    "SmolLM2-135M-Instruct, built on first use)."
)

ModelsArg = Annotated[list[Path], typer.Argument(metavar="MODEL...", help=f"The models: {MODEL_KINDS}.")]
ReferenceOpt = Annotated[Path, typer.Option("--reference", "-r", metavar="REFERENCES", help=REFERENCE_KINDS)]
NoVerifyOpt = Annotated[
    bool,
    typer.Option(
        "--skip-pack-check",
        help="Use a reference pack without checking its files' sha256 (checked already); says so in a warning.",
    ),
]
AlphaOpt = Annotated[
    float,
    typer.Option(
        "--alpha",
        metavar="LEVEL",
        help="The derivation test's level: the most an unrelated suspect is called derived, per suspect.",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where probes run: auto picks CUDA when present.")]
OutDirOpt = Annotated[
    Path | None, typer.Option("--out", "-o", metavar="DIR", help="Folder for the files this command writes.")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write --out even where it would replace or join other files (a folder that is not a previous "
        "report's, an existing file).",
    ),
]
MethodOpt = Annotated[Method, typer.Option("--method", help="lineage (ours, default) or the published tensorguard.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr (errors still shown).")]
BaseOpt = Annotated[
    Path | None,
    typer.Option(
        "--base",
        metavar="MODEL",
        help="Base model folder of LoRA adapter folders (else found by the references' hub_id).",
    ),
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache", metavar="DIR", help="Fingerprint cache folder [$LINEAGE_CACHE].")
]
VERIFY_WEIGHTS_ENV = "LINEAGE_VERIFY_WEIGHTS"
VerifyWeightsOpt = Annotated[
    bool,
    typer.Option(
        "--verify-weights",
        envvar=VERIFY_WEIGHTS_ENV,
        help="Key the cache by the sha256 of every weight byte (each model read in full, at disk speed), not "
        "by file sizes and times: a file replaced by one of the same size and time is never answered from the "
        f"cache [${VERIFY_WEIGHTS_ENV}].",
    ),
]


def verify_weights_setting() -> bool:
    """`$LINEAGE_VERIFY_WEIGHTS` as a flag (1, true, yes, on), for commands without the option."""
    import os

    return os.environ.get(VERIFY_WEIGHTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Fingerprint every model again; store nothing.")]
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
        "--jobs",
        "-j",
        min=1,
        metavar="N",
        help="Models fingerprinted at once (process: --threads' count; ray: 2 per cluster GPU or CPU).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        show_default=False,
        help="Threads lineage runs on this machine in all, divided among the workers of --executor process "
        "(the same as OMP_NUM_THREADS=N) [default: $OMP_NUM_THREADS, else the cores this process may use: CPU "
        "affinity and cgroup quota].",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster to join (ray://host:10001, auto); a local one is started without it.",
    ),
]


def executor_options(executor: ExecutorChoice, jobs: int | None, ray_address: str | None):  # noqa: ANN201 - lazy import
    """The library's `ExecutorOptions` from the shared executor options."""
    from lineage.fingerprint.executors import ExecutorOptions

    if ray_address is not None and executor is not ExecutorChoice.ray:
        raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")
    if jobs is not None and jobs > 1 and executor is ExecutorChoice.local:
        raise typer.BadParameter(
            "--jobs needs --executor process (or ray): local runs one model at a time", param_hint="--jobs"
        )
    return ExecutorOptions(kind=executor.value, jobs=jobs, ray_address=ray_address)


def use_threads(threads: int | None) -> None:
    """Size the thread pools and set the OpenMP wait policy (`lineage.fingerprint.threads`): first thing in a
    command that fingerprints, before anything imports torch."""
    from lineage.fingerprint.threads import prepare_process

    prepare_process(threads)


def check_device(device: DeviceChoice) -> None:
    """Fail before any work when the device asked for is not here (`lineage.fingerprint.device`)."""
    from lineage.fingerprint.device import check_device as check

    check(device.value)
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="LINEAGE_KEY",
        metavar="SECRET",
        show_default=False,
        help="A secret that seeds the probes (anchors, coordinates, units, mixtures), so a model cannot be edited "
        "against them; fingerprints record only its id. References must be fingerprinted with the same key "
        "[$LINEAGE_KEY].",
    ),
]
