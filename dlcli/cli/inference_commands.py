"""Commands that use a trained model: `evaluate`, `predict` and `export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli.options import JsonFlag, ModelPath, SkipBad, SplitOption
from dlcli.cli.terminal import console
from dlcli.cli.user_errors import user_errors
from dlcli.inference.choices import QUANTIZATIONS, Format, Quantization, Runtime, Split


def evaluate(
    context: typer.Context,
    model_path: ModelPath,
    split: SplitOption = Split.test,
    data: Annotated[
        Path | None,
        typer.Option(help="Evaluate on this .npz or .csv file or image folder.", metavar="PATH"),
    ] = None,
    json_output: JsonFlag = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Folder for evaluation.json, plots [default: beside it].", metavar="DIR"),
    ] = None,
    skip_bad: SkipBad = False,
) -> None:
    """Report metrics, per-class scores and the confusion matrix of a trained model.

    A model trained with --skip-bad always leaves out the image files it cannot read.

    Example: dlcli evaluate runs/mnist-1/model.keras --split test
    """
    # the model file and the data are checked before TensorFlow loads
    with user_errors(context):
        from dlcli.inference.evaluate import evaluate as run_evaluation

        result = run_evaluation(
            model_path, split=split.value, data=data, output_dir=output, skip_bad=skip_bad
        )
        from dlcli.cli import render

        render.notes(console(stderr=True), result.warnings)
        (render.evaluation_json if json_output else render.evaluation)(console(), result)


def predict(
    context: typer.Context,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders or glob patterns; .csv or .npy rows for other models.",
            show_default=False,
            metavar="INPUT",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="The .keras, .onnx or .tflite model [default: the newest in runs/ that "
            "takes the inputs].",
            metavar="PATH",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Labels shown per input.", metavar="N")] = 3,
    json_output: JsonFlag = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV rows.")] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="Only convert and resize images: no inversion, no MNIST framing."
        ),
    ] = False,
    runtime: Annotated[
        Runtime,
        typer.Option(help="auto: a .keras model's verified model.onnx when there is one."),
    ] = Runtime.auto,
) -> None:
    """Predict labels (or values) for images, or rows of features, with a trained model.

    Example: dlcli predict examples/digits/7.png --top-k 3
    """
    if json_output and csv_output:
        raise typer.BadParameter("give --json or --csv, not both")
    # the model file and the inputs are checked before TensorFlow loads
    with user_errors(context):
        from dlcli.inference.predict import predict as run_prediction

        result = run_prediction(
            inputs, model_path=model, top_k=top_k, raw=raw, runtime_name=runtime.value
        )
        from dlcli.cli import render

        stderr = console(stderr=True)
        render.notes(stderr, result.notes)
        style = "json" if json_output else "csv" if csv_output else "table"
        render.prediction_output(console(), result, style)
        render.skipped(stderr, result.problems)
        result.raise_for_problems()


def _offered_by(quantization: Quantization) -> str:
    return ", ".join(fmt for fmt, offered in QUANTIZATIONS.items() if quantization in offered)


QUANTIZATION_HELP = " or ".join(  # int8 (onnx, litert) or float16 (litert)
    f"{quantization.value} ({_offered_by(quantization)})"
    for quantization in sorted(Quantization, key=lambda q: q.value, reverse=True)
)


def export(
    context: typer.Context,
    model_path: ModelPath,
    to: Annotated[Format, typer.Option("--format", help="The format to export to.")] = Format.onnx,
    output: Annotated[
        Path | None,
        typer.Option(
            help="The file (folder for savedmodel) [default: beside the model].", metavar="PATH"
        ),
    ] = None,
    quantize: Annotated[
        Quantization | None,
        typer.Option(help=f"{QUANTIZATION_HELP}.", show_default=False),
    ] = None,
    split: Annotated[Split, typer.Option(help="The split compared on.")] = Split.test,
    data: Annotated[
        Path | None, typer.Option(help="Compare on this file or folder instead.", metavar="PATH")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Export a trained model, verified against Keras in the format's own runtime.

    Example: dlcli export runs/mnist-1/model.keras --format litert --quantize int8
    """
    # the model file, format and packages are checked before TensorFlow
    with user_errors(context):
        from dlcli.inference.export import export as run_export

        result = run_export(
            model_path,
            to.value,
            output=output,
            data=data,
            split=split.value,
            quantize=None if quantize is None else quantize.value,
        )
        from dlcli.cli import render

        (render.export_json if json_output else render.export_result)(console(), result)
