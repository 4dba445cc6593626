"""Help that reads like the tools people know (`ruff`, `hf`): usage lines with named metavars, no `<bool>`.

typer 0.29 prints every flag with a `<bool>` type, the usage of a required argument as `{paths}...`, and
keeps a docstring's line breaks, so help wraps raggedly in an 80-column terminal. `LineageCommand` and
`LineageGroup` fix all three in one place: a flag shows no type at all (`--quiet`), an argument shows its
metavar as written (`MODEL...`, `[MANIFEST]` when optional) with no type beside it, every option keeps the
metavar its module gave it (`--reference REFERENCES`), and help paragraphs are reflowed to the terminal.
Help and usage errors are plain text (click's layout, as `ruff` prints them), not rich panels: importing
rich costs 0.2 s before `--help` or a mistyped option can answer. `adopt` gives these classes to a command
tree built by typer (commands registered with the default classes, sub-groups of other modules included):
they only override help formatting, never parsing, so the swap changes nothing else.
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _NamedArgument(TyperArgument):
    """An argument with a metavar: the metavar says what it takes, a `<list[Path]>` beside it adds nothing."""

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN201 - typer's signature
        return None

    def display_type(self, ctx):  # noqa: ANN001, ANN201
        return ""


def _plain_flags(params: list) -> list:
    """`params` with every flag's type column blank (a flag takes no value: `<bool>` misleads)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif type(param) is TyperArgument and param.metavar:
            param.__class__ = _NamedArgument
    return params


def reflow(text: str | None) -> str | None:
    """Help text with each paragraph on one line (the terminal wraps it); `\\b` paragraphs kept as written."""
    if not text:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def _usage(command: TyperCommand, ctx) -> list[str]:  # noqa: ANN001 - a click Context
    """`[OPTIONS] MODEL...`: arguments by their metavar, in brackets when optional."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar or param.name.upper()
            if param.nargs != 1 and "..." not in name:
                name += "..."
            pieces.append(name if param.required or name.startswith("[") else f"[{name}]")
    return pieces


class LineageCommand(TyperCommand):
    """A typer command whose help shows flags without a type and arguments by their metavar."""

    def get_params(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        return _plain_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx):  # noqa: ANN001, ANN201
        return _usage(self, ctx)


class LineageGroup(TyperGroup):
    """A typer group with the same help, whose sub-commands and sub-groups all get it too."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - typer's signature
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        self.rich_markup_mode = None
        for command in self.commands.values():
            adopt(command)

    def get_params(self, ctx):  # noqa: ANN001, ANN201
        return _plain_flags(super().get_params(ctx))


def adopt(command: object) -> None:
    """Give a command tree built by typer these help classes (same layout: a plain class swap)."""
    if isinstance(command, TyperGroup):
        if not isinstance(command, LineageGroup):
            command.__class__ = type("LineageSubGroup", (LineageGroup, type(command)), {})
        for sub in command.commands.values():
            adopt(sub)
    elif isinstance(command, TyperCommand) and not isinstance(command, LineageCommand):
        command.__class__ = type("LineageSubCommand", (LineageCommand, type(command)), {})
    command.help = reflow(command.help)
    command.rich_markup_mode = None
