"""`dlcli tune`: a hyperparameter search over a spec's `search:` space."""

from __future__ import annotations

from typing import Annotated

import typer

from dlcli.cli.options import JsonFlag, MlflowFlag, MlflowUri, Overrides, SpecPath, mlflow_flag
from dlcli.cli.terminal import console
from dlcli.cli.user_errors import user_errors


def tune(
    context: typer.Context,
    spec_path: SpecPath,
    overrides: Overrides = [],  # noqa: B006 (Typer reads the default)
    trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default=False,
            help="The study's trials [default: search.trials].",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            metavar="SECONDS",
            show_default=False,
            help="Start no trial after this many seconds.",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            show_default=False,
            help="An Optuna storage URL shared by several processes or machines "
            "[default: study.db in the study's folder].",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            show_default=False,
            help="The study's name in the storage [default: SPEC_NAME-tune].",
        ),
    ] = None,
    mlflow: MlflowFlag = False,
    mlflow_uri: MlflowUri = None,
    json_output: JsonFlag = False,
) -> None:
    """Search the spec's `search:` space for the best hyperparameters (Optuna), then write
    best.yaml.

    Example: dlcli tune configs/mnist_tune.yaml --trials 10
    """
    # spec, search and storage mistakes are found before TensorFlow loads
    with user_errors(context):
        from dlcli.cli import render_tune
        from dlcli.tune.tuner import tune as run_tune

        view = render_tune.TuneView(console(stderr=json_output), console(stderr=True))
        result = run_tune(
            spec_path,
            overrides,
            view=view,
            trials=trials,
            timeout=timeout,
            storage=storage,
            study_name=study,
            mlflow=mlflow_flag(mlflow, mlflow_uri),
        )
        if json_output:
            render_tune.tune_json(console(), result)
        else:
            render_tune.tune_result(console(), view, result)
