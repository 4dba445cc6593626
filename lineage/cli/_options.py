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


FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="Where probes run: auto picks CUDA when present.")]
OutDirOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the files this command writes.")]
MethodOpt = Annotated[Method, typer.Option("--method", help="lineage (ours, default) or the published tensorguard.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
