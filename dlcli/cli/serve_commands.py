"""`dlcli serve`: trained models over HTTP (Open Inference Protocol, TF Serving REST, a page)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli.user_errors import user_errors
from dlcli.errors import ServerError
from dlcli.inference.choices import Runtime


def serve(
    context: typer.Context,
    models: Annotated[
        list[str],
        typer.Argument(
            help="Models: .keras or .onnx files, run folders, or run names (the newest "
            "runs/NAME-N/).",
            show_default=False,
            metavar="MODEL",
        ),
    ],
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Serve the MODELs under these names, in order (repeatable) [default: the "
            "spec's name].",
            show_default=False,
            metavar="NAME",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(help="The address to listen on (0.0.0.0: every interface).", metavar="HOST"),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The port (0: a free one).", metavar="PORT")
    ] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes, each with its own copy of the models.")
    ] = 1,
    threads: Annotated[
        int, typer.Option(min=1, help="Inference threads per process, sharing each model.")
    ] = 2,
    max_body: Annotated[
        str,
        typer.Option(
            help="The largest request body: bytes, or with KB, MB, KiB, MiB.", metavar="SIZE"
        ),
    ] = "4MiB",
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Let pages from this origin call the server (CORS; repeatable) [default: none].",
            show_default=False,
            metavar="ORIGIN",
        ),
    ] = None,
    runtime: Annotated[
        Runtime,
        typer.Option(help="auto: a .keras model's verified model.onnx when there is one."),
    ] = Runtime.auto,
) -> None:
    """Serve trained models over HTTP until SIGTERM or Ctrl-C (which drain requests first).

    Routes: POST /v2/models/NAME/infer (Open Inference Protocol), POST
    /v1/models/NAME:predict (TF Serving REST), POST /v1/models/NAME/classify-files (image or
    CSV uploads, answered as `dlcli predict --json`), and a page at /.

    Example: dlcli serve mnist --port 8000
    """
    with user_errors(context):
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError as error:
            raise ServerError(
                f"dlcli serve needs FastAPI and uvicorn ({error.name} is missing): "
                "pip install 'dlcli[serve]'"
            ) from None
        from dlcli.serve.server import ServeOptions, parse_size, serve

        options = ServeOptions(
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            max_body=parse_size(max_body),
            allow_origins=allow_origin or [],
            runtime_name=runtime.value,
            runs_dir=Path("runs"),
        )
        code = serve(models, name or [], options, lambda line: print(line, file=sys.stderr))
    raise typer.Exit(code)
