"""The `dlcli` command line: each command parses its arguments, calls one library function and
hands the result to dlcli.report. TensorFlow is imported only inside commands that need it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlcli.errors import DlcliError, UsageError
from dlcli.terminal import HelpCommand, console, discard_stdout

app = typer.Typer(
    help="Train, evaluate and use Keras models from YAML experiment specs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state = {"debug": False}

SpecPath = Annotated[
    Path, typer.Argument(help="The YAML experiment spec.", show_default=False, metavar="SPEC")
]
Overrides = Annotated[list[str], typer.Option(
    "--set", help="Override a key of the spec: --set fit.epochs=3 (repeatable).",
    metavar="KEY.PATH=VALUE")]  # fmt: skip


@contextmanager
def _user_errors(*, tensorflow: bool = False) -> Iterator[None]:
    """A DlcliError becomes `Error: ...` on stderr and its exit code; --debug keeps tracebacks.

    `tensorflow` imports it first, without its start-up lines (dlcli.device.import_tensorflow).
    """
    if tensorflow:
        from dlcli.device import import_tensorflow

        import_tensorflow()
    try:
        yield
    except DlcliError as error:
        if _state["debug"]:
            raise
        print(f"Error: {error}", file=sys.stderr, flush=True)
        raise typer.Exit(error.exit_code) from None


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Train, evaluate and use Keras models from YAML experiment specs.

    Example: dlcli train configs/mnist.yaml
    """
    _state["debug"] = debug


@app.command(cls=HelpCommand)
def train(
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
    skip_bad: Annotated[
        bool, typer.Option(help="Leave out image files that cannot be read (counted).")
    ] = False,
    start_from: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="MODEL",
            show_default=False,
            help="Start from this .keras model's weights (fit.initial_weights).",
        ),
    ] = None,  # fmt: skip
    workers: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Train as N local worker processes.")
    ] = None,
) -> None:
    """Train the model a spec describes, evaluate it on the test set and save it.

    Example: dlcli train configs/mnist.yaml --set fit.epochs=1
    """
    if workers is not None:
        with _user_errors():
            from dlcli.launch import launch

            code = launch(workers, spec_path, overrides, resume)
        raise typer.Exit(code)
    if start_from is not None:  # a path from here, whatever folder the spec is in
        overrides = [*overrides, f"fit.initial_weights={json.dumps(str(start_from.resolve()))}"]
    with _user_errors():  # spec mistakes are found before TensorFlow loads
        from dlcli import report, spec

        if spec_path is not None and resume is None:
            spec.check_spec_file(spec_path)  # before the training modules load
        from dlcli.train import run

        view = report.TrainView(console(stderr=True))
        result = run(spec_path, overrides, view=view, resume=resume, restart=restart,
                     tensorboard=tensorboard, skip_bad=skip_bad)  # fmt: skip
        report.train_result(console(), result)


@app.command(cls=HelpCommand)
def validate(spec_path: SpecPath, overrides: Overrides = []) -> None:  # noqa: B006
    """Check a spec without training (instant: TensorFlow is not loaded).

    Example: dlcli validate configs/mnist.yaml
    """
    with _user_errors():
        from dlcli.data import check_files
        from dlcli.spec import load_spec

        spec = load_spec(spec_path, overrides)
        check_files(spec.dataset, spec_path.parent, spec_path)
        print(f"{spec_path}: valid ({spec.name}: {len(spec.model.layers)} layers)")


@app.command(cls=HelpCommand)
def summary(spec_path: SpecPath, overrides: Overrides = []) -> None:  # noqa: B006
    """Build the model a spec describes and print its layers and parameter counts.

    Example: dlcli summary configs/mnist_cnn.yaml
    """
    with _user_errors(tensorflow=True):
        from dlcli.model import build_model, load_plugins
        from dlcli.spec import load_spec

        spec = load_spec(spec_path, overrides)
        load_plugins(spec.plugins)
        model = build_model(spec.model, spec.name)
        stdout = console()
        model.summary(print_fn=lambda line, **_: stdout.print(line, markup=False, highlight=False))


@app.command(cls=HelpCommand)
def schema() -> None:
    """Print the JSON Schema of the spec (for editor completion and checks).

    Example: dlcli schema > dlcli-spec.schema.json
    """
    from dlcli.spec import json_schema

    print(json_schema())


ModelPath = Annotated[  # str, not Path: Path would turn a URL's // into /
    str,
    typer.Argument(help="A .keras model trained by dlcli.", show_default=False, metavar="MODEL"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]


class Runtime(str, Enum):
    auto = "auto"
    keras = "keras"
    onnx = "onnx"


class Split(str, Enum):
    test = "test"
    validation = "validation"
    train = "train"


@app.command(cls=HelpCommand)
def evaluate(
    model_path: ModelPath,
    split: Annotated[Split, typer.Option(help="The split of the model's dataset.")] = Split.test,
    data: Annotated[
        Path | None,
        typer.Option(help="Evaluate on this .npz or .csv file or image folder.", metavar="PATH"),
    ] = None,
    json_output: JsonFlag = False,
    output: Annotated[
        Path | None,
        typer.Option(help="Folder for evaluation.json, plots [default: beside it].", metavar="DIR"),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Leave out image files that cannot be read (counted); always on for a model "
            "trained with --skip-bad.",
        ),
    ] = False,
) -> None:
    """Report metrics, per-class scores and the confusion matrix of a trained model.

    Example: dlcli evaluate runs/mnist-1/model.keras --split test
    """
    with _user_errors():  # the model file and the data are checked before TensorFlow loads
        from dlcli.evaluate import evaluate as run_evaluation

        result = run_evaluation(
            model_path, split=split.value, data=data, output_dir=output, skip_bad=skip_bad
        )
        from dlcli import report

        report.notes(console(stderr=True), result.warnings)
        (report.evaluation_json if json_output else report.evaluation)(console(), result)


@app.command(cls=HelpCommand)
def predict(
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
    with _user_errors():  # the model file and the inputs are checked before TensorFlow loads
        from dlcli.predict import predict as run_prediction

        result = run_prediction(
            inputs, model_path=model, top_k=top_k, raw=raw, runtime_name=runtime.value
        )
        from dlcli import report

        stderr = console(stderr=True)
        report.notes(stderr, result.notes)
        style = "json" if json_output else "csv" if csv_output else "table"
        report.prediction_output(console(), result, style)
        report.skipped(stderr, result.problems)
        result.raise_for_problems()


class Format(str, Enum):
    onnx = "onnx"
    litert = "litert"
    savedmodel = "savedmodel"
    openvino = "openvino"


class Quantization(str, Enum):
    float16 = "float16"
    int8 = "int8"


@app.command(cls=HelpCommand)
def export(
    model_path: ModelPath,
    to: Annotated[Format, typer.Option("--format", help="The format to export to.")] = Format.onnx,
    output: Annotated[
        Path | None,
        typer.Option(
            help="The file (folder for savedmodel) [default: beside the model].", metavar="PATH"
        ),
    ] = None,  # fmt: skip
    quantize: Annotated[
        Quantization | None,
        typer.Option(help="int8 (onnx, litert) or float16 (litert).", show_default=False),
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
    with _user_errors():  # the model file, format and packages are checked before TensorFlow
        from dlcli.export import export as run_export

        result = run_export(model_path, to.value, output=output, data=data, split=split.value,
                            quantize=None if quantize is None else quantize.value)  # fmt: skip
        from dlcli import report

        (report.export_json if json_output else report.export_result)(console(), result)


@app.command(cls=HelpCommand)
def tune(
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
    json_output: JsonFlag = False,
) -> None:
    """Search the spec's `search:` space for the best hyperparameters (Optuna), then write
    best.yaml.

    Example: dlcli tune configs/mnist_tune.yaml --trials 10
    """
    with _user_errors():  # spec, search and storage mistakes are found before TensorFlow loads
        from dlcli.tune import report
        from dlcli.tune import tune as run_tune

        view = report.TuneView(console(stderr=json_output), console(stderr=True))
        result = run_tune(spec_path, overrides, view=view, trials=trials, timeout=timeout,
                          storage=storage, study_name=study)  # fmt: skip
        if json_output:
            report.tune_json(console(), result)
        else:
            report.tune_result(console(), view, result)


@app.command(cls=HelpCommand)
def runs(
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
    with _user_errors():
        from dlcli import report, runlist

        if compare:
            result = runlist.compare(names or [], folder=directory, output=output)
            (report.comparison_json if json_output else report.comparison)(console(), result)
            return
        if output is not None:
            raise UsageError("--output names the plot of --compare; add --compare RUN RUN ...")
        listed = runlist.list_runs(directory, names or [])
        report.notes(console(stderr=True), listed.notes)
        (report.runs_json if json_output else report.runs_table)(console(), listed)


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
