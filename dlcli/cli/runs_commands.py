"""`dlcli runs`: the runs in a folder, listed or compared, from their files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli.options import JsonFlag
from dlcli.cli.terminal import console
from dlcli.cli.user_errors import user_errors
from dlcli.errors import UsageError


def runs(
    context: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Runs to show or compare: run folders, or names of runs in --dir "
            "[default: every run in --dir].",
            show_default=False,
            metavar="RUN",
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="The folder of runs [default: runs].", metavar="PATH", show_default=False
        ),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Overlay the RUNs' curves in one PNG; print their metrics side by side.",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(help="The --compare plot [default: compare.png].", metavar="PATH"),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the runs: when, dataset, epochs, test metric, status, model (TensorFlow not loaded).

    Example: dlcli runs --compare mnist-1 mnist-2
    """
    with user_errors(context):
        from dlcli.cli import render
        from dlcli.runs import listing

        if compare:
            result = listing.compare(names or [], folder=directory, output=output)
            (render.comparison_json if json_output else render.comparison)(console(), result)
            return
        if output is not None:
            raise UsageError("--output names the plot of --compare; add --compare RUN RUN ...")
        listed = listing.list_runs(directory, names or [])
        render.notes(console(stderr=True), listed.notes)
        (render.runs_json if json_output else render.runs_table)(console(), listed)
