"""The `lineage` command: one typer app, one module per command group, errors mapped to one line.

The library raises `LineageError`s and never prints; `_LineageGroup` turns each into `error: <message>`
on stderr and exit code 1, for the console script and for `CliRunner` alike; a `ValueError` raised by lineage's
own code is an option it refused (exit code 2), one raised inside a library it calls is a bug (exit code 3,
said as such). `LINEAGE_DEBUG=1` lets the exception through, to show the full traceback.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from lineage.cli._command import LineageGroup
from lineage.errors import LineageError, LineageWarning

_PACKAGE = Path(__file__).resolve().parents[1]


class _LineageGroup(LineageGroup):
    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            with one_line_warnings():
                return super().invoke(ctx)
        except LineageError as exc:
            if os.environ.get("LINEAGE_DEBUG"):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except ValueError as exc:  # an options dataclass refused a value (e.g. --anchors 4), or a bug
            if os.environ.get("LINEAGE_DEBUG"):
                raise
            if _raised_by_lineage(exc):
                typer.echo(f"error: invalid option: {exc}", err=True)
                raise typer.Exit(2) from None
            typer.echo(f"error: internal error (a bug, not the input's fault; LINEAGE_DEBUG=1 shows where): "
                       f"{type(exc).__name__}: {exc}", err=True)  # fmt: skip
            raise typer.Exit(3) from None


def _raised_by_lineage(exc: BaseException) -> bool:
    """Whether `exc` was raised by lineage's own code (a `raise` of the package), not deep inside a library it
    calls (numpy's "zero-size array to reduction operation" is a bug of ours, not an invalid option)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """The library's `LineageWarning`s as one `warning: <message>` line each on stderr (each message once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", LineageWarning)
        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - warnings' hook
            if issubclass(category, LineageWarning):
                typer.echo(f"warning: {message}", err=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


app = typer.Typer(
    name="lineage",
    cls=_LineageGroup,
    help="Tell, from a checkpoint's weights alone, which base-model family an LLM comes from.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help and errors: no rich import (0.2 s) for `--help` or a typo
)


def _version(value: bool) -> None:
    if value:
        from lineage import __version__

        typer.echo(f"lineage {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Tell, from a checkpoint's weights alone, whether an LLM derives from a known base model."""


def _register() -> None:
    # Explicit registration, no import-time magic: each module adds its commands to `app`.
    from lineage.cli import attribute, catalog, classify, evaluate, fingerprint, refs, scan, store, tree, verify

    for module in (fingerprint, classify, scan, tree, attribute, evaluate, catalog, refs, store, verify):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point.

    Once the command is done, the process ends without the interpreter's teardown: with torch loaded, tearing
    its modules down takes 0.3-0.5 s on a 2-core machine (`python bench/bench_startup.py`), a sixth of a whole
    fingerprint of a 1B model. Exit handlers still run and output is flushed first; with a worker thread
    still running, the exit is the ordinary one.
    """
    try:
        app()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: object) -> None:
    """End the process with `code` (a `SystemExit` code) as the interpreter would, minus its teardown."""
    import atexit
    import sys
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what SystemExit("text") prints
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written to it
            pass
    os._exit(code or 0)
