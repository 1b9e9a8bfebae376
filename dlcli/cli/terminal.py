"""Where the CLI's output goes: rich consoles on stdout (a closed pipe tolerated) and stderr,
and help that lists each argument by its metavar."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    """Rich output for the commands that print tables or progress (imported where it is needed).

    Piped or redirected output is never wrapped (a long path stays one line, tables keep
    their width); a reader that leaves early (`| head -1`) is not an error (`_Stdout`).
    """
    from rich.console import Console

    stream = sys.stderr if stderr else _Stdout()
    terminal = stream.isatty()
    return Console(
        # rich types `file` as IO[str] but uses only write, flush and what _Stdout passes on
        file=stream,  # type: ignore[arg-type]
        width=None if terminal else _UNWRAPPED_WIDTH,
        soft_wrap=not terminal,
    )


_UNWRAPPED_WIDTH = 100_000  # columns of piped output: wider than any line dlcli writes


class _Stdout:
    """sys.stdout for rich, where a closed pipe (the reader left, as `head -1` does) discards
    the rest of the output instead of failing the command."""

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except BrokenPipeError:
            discard_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            discard_stdout()

    def __getattr__(self, name: str) -> Any:  # whatever sys.stdout has
        return getattr(sys.stdout, name)


def discard_stdout() -> None:
    """Point file descriptor 1 at /dev/null: what is still buffered, or written later, goes
    nowhere instead of raising BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class HelpCommand(TyperCommand):
    """Help that lists an argument by its metavar alone (`MODEL`, not `MODEL <str>`)."""

    # typer types `ctx` as the Context of its vendored click (typer._click, private), which
    # typer.Context subclasses; `formatter` is typer's HelpFormatter
    def format_options(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                arguments.append((name + ("..." if param.nargs != 1 else ""), record[1]))
            else:
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)
