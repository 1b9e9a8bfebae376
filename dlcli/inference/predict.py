"""Inputs (images, .csv, .npy files, or the same held in memory) -> model inputs -> ranked
predictions.

Everything about how inputs must look comes from the dlcli.json inside the model: the input
shape, and for images their size, channels, polarity and framing, so an image is
turned into exactly what the model was trained on (dlcli.inference.inputs reads the files). A plain
Keras model without dlcli.json is used when its input shape is unambiguous, and the assumption
is said. Files that cannot be read are reported one by one; the others are still predicted.
`predict` opens the model for one call; a `Predictor` (`open_predictor`) keeps it open for many,
as `dlcli serve` does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dlcli.data.common import Arrays, ImageInfo, rows
from dlcli.errors import InputError, ModelFileError
from dlcli.inference.export import verified_sibling
from dlcli.inference.inputs import (
    IMAGE_SUFFIXES,
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    Input,
    InputDescription,
    MemoryInput,
    expand_inputs,
    holds_rows,
    read_inputs,
)
from dlcli.inference.pick_model import choose_model
from dlcli.inference.runtimes import EXPORTED_SUFFIXES, OnnxModel, Runtime, open_exported
from dlcli.model import artifact
from dlcli.model.scoring import as_probabilities, logits_note, output_arrays, outputs_are_logits
from dlcli.model.signature import ModelTask, Task, describe_outputs, single_shape

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelInfo

PREDICT_BATCH_SIZE = 1024
DEFAULT_RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class Prediction:
    input: str
    row: int | None = None  # the row of a .csv or .npy file, counted from 0
    labels: list[str] = field(default_factory=list)  # top-k, most probable first
    probabilities: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # regression outputs
    output: str | None = None  # the model's output, for a model of several

    @property
    def name(self) -> str:
        name = self.input if self.row is None else f"{self.input}[{self.row}]"
        return name if self.output is None else f"{name} {self.output}"


@dataclass(frozen=True)
class PredictResult:
    model_path: Path
    task: ModelTask | Literal[""]  # "": no input was found, so no model was chosen
    predictions: list[Prediction]
    problems: list[str] = field(default_factory=list)  # one line per input that failed
    notes: list[str] = field(default_factory=list)  # the model chosen, what was assumed

    def to_dict(self) -> dict[str, Any]:
        def item(prediction: Prediction) -> dict[str, Any]:
            result: dict[str, Any] = {"input": prediction.input, "row": prediction.row}
            if prediction.output is not None:
                result["output"] = prediction.output
            if prediction.values:
                result["value"] = prediction.values
            else:
                result["top_k"] = [
                    {"label": label, "probability": probability}
                    for label, probability in zip(
                        prediction.labels, prediction.probabilities, strict=True
                    )
                ]
            return result

        return {
            "model": str(self.model_path),
            "task": self.task,
            "predictions": [item(prediction) for prediction in self.predictions],
            "errors": self.problems,
        }

    def raise_for_problems(self) -> None:
        """InputError (exit code 7) when any input could not be predicted."""
        if self.problems:
            total = len(self.problems) + len({p.input for p in self.predictions})
            raise InputError(
                f"{len(self.problems)} of {total} inputs could not be predicted (listed above)"
            )


def _single_shape(shape: Any, path: Path, what: str) -> tuple[int | None, ...]:
    single = single_shape(shape)
    if single is None:
        raise ModelFileError(f"{path}: predict takes models with one {what}; it has {len(shape)}")
    return single


def describe(info: ModelInfo) -> InputDescription:
    """How inputs must look, from dlcli.json alone (no TensorFlow)."""
    outputs = None
    if info.outputs is not None:
        outputs = {name: (out.task, out.class_names) for name, out in info.outputs.items()}
    if info.inputs is not None:
        columns = {name: record.feature_names or [] for name, record in info.inputs.items()}
        return InputDescription(
            (), info.task, info.class_names, inputs=columns, outputs=outputs, table=info.columns
        )
    assert info.input is not None
    shape = tuple(info.input.shape)
    image = info.input.image
    found = _image_shape(shape)
    csv = info.spec.dataset.csv
    return InputDescription(
        shape=shape,
        task=info.task,
        class_names=info.class_names,
        image=ImageInfo(**image.model_dump()) if image else ImageInfo(*found) if found else None,
        feature_names=info.input.feature_names,
        outputs=outputs,
        table=info.columns,
        windows=csv.windows if csv is not None else None,
    )


def describe_inputs(
    model: Any, info: ModelInfo | None, path: Path
) -> tuple[InputDescription, list[str]]:
    """How inputs must look, and notes on what was assumed when dlcli.json is missing."""
    if info is not None:
        return describe(info), []
    shape = _single_shape(model.input_shape, path, "input")
    units = _single_shape(model.output_shape, path, "output")[-1] or 1
    image_shape = _image_shape(shape)
    if image_shape is None and (len(shape) != 1 or shape[0] is None):
        raise ModelFileError(
            f"{path}: has no dlcli.json and its input shape {shape} does not say what it "
            "takes; train the model with dlcli, or give it images (height, width[, channels]) "
            "or rows of features"
        )
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    task = (
        Task.multiclass
        if units > 1
        else Task.binary
        if activation == "sigmoid"
        else Task.regression
    )
    if image_shape is not None:
        height, width, channels = image_shape
        kind = {1: "grayscale", 3: "RGB", 4: "RGBA"}[channels]
        inputs = f"{height}x{width} {kind} images with values 0..255, not inverted or re-framed"
    else:
        inputs = f"rows of {shape[0]} features"
    outputs = {
        Task.multiclass: f"its {units} outputs are the scores of classes 0..{units - 1}",
        Task.binary: "its sigmoid output is the probability of class 1",
        Task.regression: "its output is a value (regression)",
    }[task]
    description = InputDescription(
        shape=shape,
        task=task,
        class_names=None,
        image=None if image_shape is None else ImageInfo(*image_shape),
    )
    return description, [f"{path} has no dlcli.json: assumed it takes {inputs}, and {outputs}"]


def _image_shape(shape: tuple[int | None, ...]) -> tuple[int, int, int] | None:
    """(height, width, channels) when a shape can only be an image."""
    sizes = [size for size in shape if size is not None]
    if len(sizes) != len(shape):
        return None
    if len(sizes) == 2:
        return int(sizes[0]), int(sizes[1]), 1
    if len(sizes) == 3 and sizes[2] in (1, 3, 4):
        return int(sizes[0]), int(sizes[1]), int(sizes[2])
    return None


# ---------------------------------------------------------------------------------------------
# Ranking


def class_columns(
    outputs: np.ndarray, task: Task, class_names: list[str] | None
) -> tuple[list[str], np.ndarray]:
    """A classifier's probabilities as a column per class (a binary classifier's one output
    becomes two) and the name of each column (class names, or indices as text).

    >>> names, columns = class_columns(np.array([[0.75]]), Task.binary, ["no", "yes"])
    >>> names, columns.tolist()
    (['no', 'yes'], [[0.25, 0.75]])
    """
    outputs = outputs.reshape(len(outputs), -1).astype("float64")
    if task == Task.binary:
        outputs = np.concatenate([1.0 - outputs[:, :1], outputs[:, :1]], axis=1)
    names = class_names
    if not names or len(names) != outputs.shape[1]:
        names = [str(index) for index in range(outputs.shape[1])]
    return list(names), outputs


def rank(
    outputs: np.ndarray, task: Task, class_names: list[str] | None, top_k: int
) -> list[tuple[list[str], list[float]]]:
    """Top-k (labels, probabilities) per example, most probable first."""
    names, outputs = class_columns(outputs, task, class_names)
    order = np.argsort(-outputs, axis=1, kind="stable")[:, : max(1, top_k)]
    return [
        ([names[i] for i in row], [float(outputs[n, i]) for i in row])
        for n, row in enumerate(order)
    ]


@dataclass
class _Runtime:
    """The model: an exported one in its runtime (no TensorFlow), or the Keras model, loaded
    when the first examples are ready (so an input that cannot be read is answered without
    TensorFlow); and whether its outputs were logits (exported ones: told by their values)."""

    checked: artifact.ModelFile
    exported: Runtime | None = None
    model: Any = None
    logits: bool = False
    converted: bool = False
    linear: dict[str, bool] = field(default_factory=dict)  # whether each output gives logits
    lock: threading.Lock = field(default_factory=threading.Lock)  # Keras: one call at a time

    def load(self) -> None:
        self.model = artifact.load(self.checked, require_metadata=False).model
        self.logits = outputs_are_logits(self.model)
        self.linear = {o.name: o.activation == "linear" for o in describe_outputs(self.model)}

    def predict(self, batch: Arrays) -> list[np.ndarray]:
        """The model's outputs: one array per output."""
        if self.exported is not None:  # onnxruntime and LiteRT sessions: thread-safe
            return self.exported.run(batch)
        with self.lock:
            if self.model is None:
                self.load()
            info = self.checked.info
            if info is not None and info.columns is not None and info.columns.encoded:
                from dlcli.model.feature_space import predict_raw

                outputs = predict_raw(self.model, batch, PREDICT_BATCH_SIZE)
            else:
                outputs = self.model.predict(batch, batch_size=PREDICT_BATCH_SIZE, verbose=0)
        return output_arrays(outputs)


def _model(
    inputs: Sequence[str | Path | MemoryInput],
    model_path: Path | str | None,
    runtime: str,
    runs_dir: Path,
    onnx_threads: int | None = None,
) -> tuple[_Runtime, list[str]] | list[str]:
    """The model to predict with and notes on it, or the problems when no input exists.

    An exported .onnx or .tflite file runs in its runtime; a .keras file through the verified
    model.onnx beside it unless `runtime` is "keras" (and only through it when "onnx").
    """
    if model_path is not None and Path(model_path).suffix.lower() in EXPORTED_SUFFIXES:
        info, exported = open_exported(Path(model_path))
        return _Runtime(artifact.ModelFile(Path(model_path), info), exported), []
    notes: list[str] = []
    if model_path is None:
        found, problems = expand_inputs(inputs, IMAGE_SUFFIXES + TABLE_SUFFIXES + TEXT_SUFFIXES)
        named = [item for item in found if isinstance(item, Path)]
        if found and not named:
            raise ModelFileError("inputs held in memory need a model: give model_path")
        if not named:
            return problems
        checked, takes = choose_model(named, runs_dir)
        notes.append(f"Model: {checked.path} (the newest in {runs_dir}/ that takes {takes})")
    else:
        checked = artifact.inspect(model_path, require_metadata=False)
    sibling = None if runtime == "keras" or checked.info is None else verified_sibling(checked.path)
    if sibling is None and runtime == "onnx":
        raise ModelFileError(
            f"{checked.path}: no model.onnx verified against it beside it; write one with "
            f"`dlcli export {checked.path} --format onnx`"
        )
    if sibling is None:
        columns = checked.info.columns if checked.info is not None else None
        if columns is not None and columns.encoded and "text" in columns.kinds.values():
            notes.append(
                f"Runtime: Keras (TensorFlow), {checked.path}: its TextVectorization takes the "
                "raw text (no model.onnx: tf2onnx has no form for its string operations)"
            )
        elif columns is not None and columns.encoded:
            notes.append(
                f"Runtime: Keras (TensorFlow), {checked.path}: its FeatureSpace takes the raw "
                "columns (no model.onnx: tf2onnx has no form for its string lookups)"
            )
        return _Runtime(checked), notes
    notes.append(f"Runtime: onnxruntime, {sibling} (verified against {checked.path.name})")
    return _Runtime(checked, OnnxModel(sibling, onnx_threads)), notes


@dataclass(frozen=True)
class Scores:
    """One output's scores for a batch of examples: a classifier's probabilities, a column per
    class named in `labels`, or a regression's values (`labels` empty)."""

    output: str  # the model's output; "" for a model of one output
    task: Task
    labels: list[str]
    values: np.ndarray  # (examples, columns), float64


def _batch(arrays: list[Arrays]) -> Arrays:
    """The examples of several inputs as one batch."""
    if isinstance(arrays[0], dict):  # uint8 pixels or float rows: the model casts them
        return {name: np.concatenate([a[name] for a in arrays]) for name in arrays[0]}
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def _predictions(
    scores: list[Scores], sources: list[tuple[str, int | None]], top_k: int
) -> list[Prediction]:
    """Each example's predictions: one per output, in the order of the examples."""
    per_output = []
    for score in scores:
        named = score.output or None
        if score.task == Task.regression:
            per_output.append(
                [
                    Prediction(name, row, values=[float(v) for v in value], output=named)
                    for (name, row), value in zip(sources, score.values, strict=True)
                ]
            )
            continue
        order = np.argsort(-score.values, axis=1, kind="stable")[:, : max(1, top_k)]
        per_output.append(
            [
                Prediction(
                    name,
                    row,
                    labels=[score.labels[i] for i in ranked],
                    probabilities=[float(score.values[n, i]) for i in ranked],
                    output=named,
                )
                for n, ((name, row), ranked) in enumerate(zip(sources, order, strict=True))
            ]
        )
    return [prediction for example in zip(*per_output, strict=True) for prediction in example]


class Predictor:
    """A model opened once and used for many predictions, from any thread.

    Built by `open_predictor` (or by `predict` for one call). `predict` takes files and inputs
    held in memory alike; `read` and `scores` are its two halves, for callers that hold
    arrays already (the tensors of a serving protocol).
    """

    def __init__(self, runtime: _Runtime, notes: list[str]) -> None:
        self.runtime = runtime
        self.notes = notes
        checked = runtime.checked
        if checked.info is None:  # a plain Keras model: its shape says what it takes
            runtime.load()
            self.description, assumed = describe_inputs(runtime.model, None, checked.path)
            self.notes = [*notes, *assumed]
        else:
            self.description = describe(checked.info)
        if self.description.windows is not None:
            from dlcli.data.time_windows import forecast_note

            self.notes = [*self.notes, forecast_note(self.description.windows)]

    @property
    def path(self) -> Path:
        """The model file."""
        return self.runtime.checked.path

    @property
    def info(self) -> ModelInfo | None:
        """The model's dlcli.json (None for a plain Keras model)."""
        return self.runtime.checked.info

    @property
    def runtime_name(self) -> str:
        """What runs the model: "onnxruntime", "litert" or "keras"."""
        if isinstance(self.runtime.exported, OnnxModel):
            return "onnxruntime"
        return "keras" if self.runtime.exported is None else "litert"

    def read(self, given: Input, *, raw: bool = False) -> Arrays:
        """One input's examples, shaped as the model takes them (as `predict` reads them).

        Raises:
            InputError: the input cannot be read or does not fit the model.
        """
        [(_, examples)] = list(read_inputs([given], self.description, raw))
        if isinstance(examples, InputError):
            raise examples
        return examples

    def scores(self, batch: Arrays) -> list[Scores]:
        """The scores of each output for a batch of examples, in the order of the outputs;
        logits are turned into probabilities."""
        runtime = self.runtime
        predicted = runtime.predict(batch)
        found = []
        heads = self.description.heads().items()
        for (output, (task, class_names)), outputs in zip(heads, predicted, strict=True):
            if task == Task.regression:
                values = outputs.reshape(len(outputs), -1).astype("float64")
                found.append(Scores(output=output, task=task, labels=[], values=values))
                continue
            # an exported model's outputs are told apart by their values (as_probabilities)
            logits = runtime.linear.get(output, False) if self.description.outputs else None
            logits = runtime.logits if logits is None else logits
            outputs, converted = as_probabilities(outputs, task, logits or runtime.converted)
            runtime.converted |= converted
            labels, values = class_columns(outputs, task, class_names)
            found.append(Scores(output=output, task=task, labels=labels, values=values))
        return found

    def predict(
        self, inputs: Sequence[str | Path | MemoryInput], *, top_k: int = 3, raw: bool = False
    ) -> PredictResult:
        """Predictions for files and inputs held in memory; see `predict`."""
        accepted: tuple[str, ...] = IMAGE_SUFFIXES
        if self.description.image is None:
            accepted = TABLE_SUFFIXES
        if self.description.text_column is not None:
            accepted = TEXT_SUFFIXES + TABLE_SUFFIXES
        files, problems = expand_inputs(inputs, accepted)
        errors: list[InputError] = []
        predictions: list[Prediction] = []
        arrays: list[Arrays] = []
        sources: list[tuple[str, int | None]] = []
        for given, examples in read_inputs(files, self.description, raw):
            if isinstance(examples, InputError):
                problems.append(str(examples))
                errors.append(examples)
                continue
            arrays.append(examples)
            name = given.name if isinstance(given, MemoryInput) else str(given)
            numbers = range(rows(examples)) if holds_rows(given, self.description) else [None]
            sources += [(name, row) for row in numbers]
            if len(sources) >= PREDICT_BATCH_SIZE:
                predictions += _predictions(self.scores(_batch(arrays)), sources, top_k)
                arrays, sources = [], []
        if arrays:
            predictions += _predictions(self.scores(_batch(arrays)), sources, top_k)
        notes = list(self.notes)
        if self.runtime.converted:
            notes.append(logits_note(self.description.task))
        if not predictions and len(problems) == 1:
            raise errors[0] if errors else InputError(problems[0])
        return PredictResult(self.path, self.description.task, predictions, problems, notes)


def open_predictor(
    model_path: Path | str, *, runtime_name: str = "auto", onnx_threads: int | None = None
) -> Predictor:
    """Open a model for many predictions: an exported `.onnx` or `.tflite` file in its runtime,
    a `.keras` file through the verified model.onnx beside it unless `runtime_name` is "keras".

    Keras is imported (on the calling thread) only for a model that has no verified export;
    call this from the main thread then, as TensorFlow must be imported there. `onnx_threads`
    sets the intra-op threads of an onnxruntime session (`dlcli.inference.runtimes.OnnxModel`).

    Raises:
        ModelFileError: the model file is missing, unsafe or inconsistent.

    Example:

    ```python
    predictor = open_predictor("runs/mnist-1/model.keras")
    predictor.predict([MemoryInput("7.png", Path("7.png").read_bytes())])
    ```
    """
    chosen = _model([], model_path, runtime_name, DEFAULT_RUNS_DIR, onnx_threads)
    assert not isinstance(chosen, list)  # a model path was given
    runtime, notes = chosen
    return Predictor(runtime, notes)


def predict(
    inputs: Sequence[str | Path | MemoryInput],
    *,
    model_path: Path | str | None = None,
    top_k: int = 3,
    raw: bool = False,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    runtime_name: str = "auto",
) -> PredictResult:
    """Predicts labels (or values) for input files with a trained model.

    A file that cannot be read is reported in the result and the others are still predicted.
    The model file and the inputs are checked before TensorFlow is imported: a dlcli model is
    described by its dlcli.json, and Keras loads it only once the first inputs are read. A
    plain Keras model (no dlcli.json) is used when its input shape is unambiguous, and the
    assumption is said in the notes.

    Args:
        inputs: Image files, folders (searched recursively) or glob patterns; .csv or .npy
            files of rows for a model that takes rows of features; inputs held in memory
            (`dlcli.inference.inputs.MemoryInput`: image or CSV bytes, a PIL image, arrays,
            rows as mappings), which need `model_path`.
        model_path: The `.keras` model, or an exported `.onnx` or `.tflite` file; None
            chooses the newest model under `runs_dir` that takes the inputs
            (`dlcli.inference.pick_model.choose_model`), named in the notes.
        top_k: Labels kept per input, most probable first.
        raw: Skip the polarity and MNIST framing steps (images are only converted and
            resized).
        runs_dir: The folder of run directories searched when `model_path` is None.
        runtime_name: "auto" runs a .keras model through the verified model.onnx beside it
            when there is one (no TensorFlow), "keras" through Keras, "onnx" through
            onnxruntime only. An .onnx or .tflite model always runs in its own runtime.

    Returns:
        A `PredictResult`: the predictions in input order, one line per input that failed
        (`problems`), and the notes (the model chosen, what was assumed).

    Raises:
        ModelFileError: the model file is missing, unsafe or inconsistent, or no model fits.
        InputError: right away when the only input fails.

    Example:

    ```python
    result = predict(["examples/digits/7.png"], model_path="runs/mnist-1/model.keras")
    result.predictions[0].labels, result.predictions[0].probabilities
    # (['7', '3', '9'], [0.998, 0.001, 0.0004])
    ```
    """
    chosen = _model(inputs, model_path, runtime_name, runs_dir)
    if isinstance(chosen, list):
        return _nothing_predicted(chosen)
    runtime, notes = chosen
    return Predictor(runtime, notes).predict(inputs, top_k=top_k, raw=raw)


def _nothing_predicted(problems: list[str]) -> PredictResult:
    """No input file was found: the one problem as InputError, or each listed."""
    if len(problems) == 1:
        raise InputError(problems[0])
    return PredictResult(Path(), "", [], problems)
