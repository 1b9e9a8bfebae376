"""The `dlcli` command line: the Typer app, its commands (one module per group) and the entry
point. Each command parses its arguments, calls one library function and hands the result to
dlcli.cli.render; TensorFlow is imported only inside the commands that need it."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from dlcli.cli import (
    inference_commands,
    runs_commands,
    serve_commands,
    spec_commands,
    train_commands,
    tune_commands,
)
from dlcli.cli.terminal import HelpCommand, discard_stdout

app = typer.Typer(
    help="Train, evaluate and use Keras models from YAML experiment specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def main_options(
    context: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Train, evaluate and use Keras models from YAML experiment specs.

    Example: dlcli train configs/mnist.yaml
    """
    context.obj = {"debug": debug}  # read by dlcli.cli.user_errors


for command in (
    train_commands.train,
    spec_commands.validate,
    spec_commands.summary,
    spec_commands.schema,
    inference_commands.evaluate,
    inference_commands.predict,
    inference_commands.export,
    tune_commands.tune,
    runs_commands.runs,
    serve_commands.serve,
):
    app.command(cls=HelpCommand)(command)


def main() -> None:
    """Console-script entry point.

    Once a command is done (its files written and closed, its output flushed), the process
    leaves without Python's teardown, which takes long once TensorFlow was loaded. Tracebacks
    of genuine bugs still go the normal way. A reader of stdout that left early (`dlcli
    evaluate M | head -1`) is not an error: the rest of the output is discarded and the exit
    code is the command's.
    """
    try:
        app()
    except SystemExit as done:
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            discard_stdout()
        sys.stderr.flush()
        os._exit(code)
