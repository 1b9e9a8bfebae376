"""Arguments and options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.inference.choices import Split

SpecPath = Annotated[
    Path, typer.Argument(help="The YAML experiment spec.", show_default=False, metavar="SPEC")
]
Overrides = Annotated[
    list[str],
    typer.Option(
        "--set",
        help="Override a key of the spec: --set fit.epochs=3 (repeatable).",
        metavar="KEY.PATH=VALUE",
    ),
]
ModelPath = Annotated[  # str, not Path: Path would turn a URL's // into /
    str,
    typer.Argument(help="A .keras model trained by dlcli.", show_default=False, metavar="MODEL"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]
SkipBad = Annotated[
    bool,
    typer.Option(
        "--skip-bad", help="Leave out image files that cannot be read (counted).", show_default=True
    ),
]


SplitOption = Annotated[Split, typer.Option(help="The split of the model's dataset.")]

# Typer's parser takes no option whose value may be left out (`--mlflow [URI]`): a flag and a URI
MlflowFlag = Annotated[
    bool,
    typer.Option(
        "--mlflow",
        help="Mirror to MLflow (MLFLOW_TRACKING_URI, else mlflow.db in the output folder).",
    ),
]
MlflowUri = Annotated[
    str | None,
    typer.Option(
        "--mlflow-uri",
        metavar="URI",
        show_default=False,
        help="Mirror to the MLflow tracking server or store at URI (implies --mlflow).",
    ),
]


def mlflow_flag(mlflow: bool, uri: str | None) -> str | None:
    """`--mlflow` and `--mlflow-uri` as one value: None (neither), "" (the flag) or the URI."""
    return uri if uri else ("" if mlflow else None)
