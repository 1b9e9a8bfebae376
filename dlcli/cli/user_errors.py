"""How a command ends on a user's mistake: `Error: ...` on stderr and the error's exit code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from dlcli.errors import DlcliError


@contextmanager
def user_errors(context: typer.Context, *, tensorflow: bool = False) -> Iterator[None]:
    """A DlcliError becomes `Error: ...` on stderr and its exit code; --debug keeps tracebacks.

    Args:
        context: the command's context; its root holds the `--debug` option.
        tensorflow: import TensorFlow first, without its start-up lines
            (dlcli.distribute.device.import_tensorflow).
    """
    if tensorflow:
        from dlcli.distribute.device import import_tensorflow

        import_tensorflow()
    try:
        yield
    except DlcliError as error:
        if (context.find_root().obj or {}).get("debug"):
            raise
        print(f"Error: {error}", file=sys.stderr, flush=True)
        raise typer.Exit(error.exit_code) from None
