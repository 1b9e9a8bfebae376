"""`dlcli train`: a spec in, a trained, evaluated, saved model out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli.options import MlflowFlag, MlflowUri, Overrides, SkipBad, mlflow_flag
from dlcli.cli.terminal import console
from dlcli.cli.user_errors import user_errors


def train(
    context: typer.Context,
    spec_path: Annotated[
        Path | None,
        typer.Argument(help="The YAML experiment spec.", show_default=False, metavar="SPEC"),
    ] = None,
    overrides: Overrides = [],  # noqa: B006 (Typer reads the default)
    resume: Annotated[
        Path | None, typer.Option(help="Continue an interrupted run from its backup.")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="With --resume: start that run over (after a spec change).")
    ] = False,
    tensorboard: Annotated[bool, typer.Option(help="Write TensorBoard logs.")] = False,
    skip_bad: SkipBad = False,
    start_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="MODEL",
            show_default=False,
            help="Start from this .keras model's weights (fit.initial_weights).",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Train as N local worker processes.")
    ] = None,
    mlflow: MlflowFlag = False,
    mlflow_uri: MlflowUri = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress: only the first lines and results.")
    ] = False,
) -> None:
    """Train the model a spec describes, evaluate it on the test set and save it.

    Example: dlcli train configs/mnist.yaml --set fit.epochs=1
    """
    if workers is not None:
        with user_errors(context):
            from dlcli.train.launch import launch

            code = launch(workers, spec_path, overrides, resume)
        raise typer.Exit(code)
    # spec mistakes are found before TensorFlow loads
    with user_errors(context):
        from dlcli.spec.load import check_spec_file

        if spec_path is not None and resume is None:
            check_spec_file(spec_path)  # before the training modules load
        from dlcli.cli import render
        from dlcli.train.pipeline import run

        result = run(
            spec_path,
            overrides,
            view=render.TrainView(console(stderr=True), quiet=quiet),
            resume=resume,
            restart=restart,
            tensorboard=tensorboard,
            skip_bad=skip_bad,
            start_from=start_from,
            mlflow=mlflow_flag(mlflow, mlflow_uri),
        )
        render.train_result(console(), result)
