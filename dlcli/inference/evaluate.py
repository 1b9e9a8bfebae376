"""A trained model + a split of its data -> Evaluation: the numbers behind `dlcli evaluate`.

`evaluate` needs nothing but the model file: the dlcli.json inside names the dataset (with the
seed that made the splits), the task and the class names. This module finds the examples and
writes the files; the numbers come from dlcli.model.scoring, the plots from dlcli.utils.plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.data.class_codes import as_class_indices
from dlcli.data.common import Arrays, Splits, in_order, rows
from dlcli.data.example_stream import ExampleStream
from dlcli.errors import DataError, OutputError
from dlcli.inference.choices import SPLITS
from dlcli.inference.inputs import dataset_base_dir, file_dataset, split_source
from dlcli.inference.runtimes import EXPORTED_SUFFIXES, open_exported
from dlcli.model.checks import check_examples, with_channel_axes
from dlcli.model.scoring import (
    CLASSIFIERS,
    ClassScores,
    as_probabilities,
    classification,
    confident_mistakes,
    logits_note,
    outputs_are_logits,
    regression_errors,
    score,
    top_classes,
    true_classes,
)
from dlcli.model.signature import ModelTask, Output, Task, describe_outputs

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelInfo

MAX_MISCLASSIFIED = 36


@dataclass(frozen=True)
class Evaluation:
    """Everything `dlcli evaluate` reports; `to_dict` is evaluation.json."""

    model_path: Path
    data: str
    split: str
    task: ModelTask
    examples: int
    metrics: dict[str, float]  # Keras's model.evaluate: the loss and the compiled metrics
    class_names: list[str] = field(default_factory=list)
    classes: list[ClassScores] = field(default_factory=list)
    averages: dict[str, ClassScores] = field(default_factory=dict)
    confusion: np.ndarray | None = None
    confused_pairs: list[tuple[str, str, int]] = field(default_factory=list)
    threshold: float | None = None
    roc_auc: float | None = None
    regression: dict[str, float | None] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, Evaluation] = field(default_factory=dict)  # each output's, for several

    def to_dict(self) -> dict[str, Any]:
        def scores(item: ClassScores) -> dict[str, Any]:
            return {
                "precision": item.precision,
                "recall": item.recall,
                "f1": item.f1,
                "support": item.support,
            }

        result: dict[str, Any] = {
            "model": str(self.model_path),
            "data": self.data,
            "split": self.split,
            "task": self.task,
            "examples": self.examples,
            "metrics": self.metrics,
        }
        if self.classes:
            result["classes"] = {item.name: scores(item) for item in self.classes}
            result["averages"] = {name: scores(item) for name, item in self.averages.items()}
        if self.confusion is not None:
            result["confusion_matrix"] = {
                "labels": self.class_names,
                "rows_true_columns_predicted": self.confusion.tolist(),
            }
            result["most_confused"] = [
                {"true": true, "predicted": predicted, "count": count}
                for true, predicted, count in self.confused_pairs
            ]
        if self.task == Task.binary:
            result["roc_auc"] = self.roc_auc
        if self.threshold is not None:
            result["threshold"] = self.threshold
        if self.regression:
            result["regression"] = self.regression
        if self.outputs:
            shared = ("model", "data", "split", "examples", "files", "warnings")
            result["outputs"] = {
                name: {key: value for key, value in part.to_dict().items() if key not in shared}
                for name, part in self.outputs.items()
            }
        result["files"] = {name: str(path) for name, path in self.files.items()}
        result["warnings"] = self.warnings
        return result


# ---------------------------------------------------------------------------------------------
# Examples


@dataclass(frozen=True)
class Examples:
    """The examples evaluate scores, and where they came from."""

    x: Arrays  # one array, or one per model input by name
    y: Arrays  # one array, or one per model output by name
    source: str  # the file, folder or dataset of this split (`split_source`)
    split: str  # test, validation, train, or "all" for --data
    warnings: list[str]


def _skipped_note(count: int, recorded: int) -> list[str]:
    if not count:
        return []
    trained = f" (training left out {recorded}, with --skip-bad)" if recorded else ""
    return [f"Skipped {count} image files that cannot be read{trained}"]


def load_examples(
    info: ModelInfo, model_path: Path, split: str, data: Path | None, *, skip_bad: bool = False
) -> Examples:
    """The examples of a split of the model's dataset, or of all of `data`.

    Image files that cannot be read are left out (and counted in the warnings) with
    `skip_bad`, or when dlcli.json records that training left some out (`dlcli train
    --skip-bad`), so that the data is what training read.
    """
    from dlcli.data.load import load_dataset

    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}. Received: {split!r}")
    recorded = info.dataset.skipped
    skip_bad = skip_bad or recorded > 0
    if data is not None:
        return _data_examples(info, data, split, skip_bad)
    spec = info.spec
    base_dir = dataset_base_dir(spec.dataset, model_path)
    fill = info.columns.fill if info.columns is not None else None
    splits = load_dataset(spec.dataset, base_dir, spec.seed or 0, skip_bad=skip_bad, fill=fill)
    warnings = _skipped_note(splits.info.skipped, recorded)
    if info.dataset.digest and splits.info.digest != info.dataset.digest:
        warnings.append(
            f"the data of {splits.info.source} is not the data the model was trained on "
            "(its digest differs); the numbers describe the data as it is now"
        )
    chosen = {"train": splits.train, "validation": splits.validation, "test": splits.test}[split]
    if split == "test" and splits.test_is_train:
        warnings.append(f"{splits.info.source} has no test split; evaluating on the training data")
        split = "train"
    if chosen is None:
        raise DataError(
            f"{splits.info.source} has no validation split (the spec sets no "
            "`dataset.validation_split`); use --split test or --split train"
        )
    source = split_source(spec.dataset, split, base_dir)
    return Examples(chosen.x, _codes(info, splits, chosen.y, source), source, split, warnings)


def _codes(info: ModelInfo, splits: Splits, y: Any, source: str) -> Any:
    """Integer labels of a model whose classes are integer codes (`1`, `2`): their indices."""
    integers = splits.info.integer_labels
    if info.outputs is None or not isinstance(y, dict):
        return _output_codes(info.class_names, "" in integers, y, source)
    classes = {name: output.class_names for name, output in info.outputs.items()}
    return {
        name: _output_codes(classes.get(name), name in integers, labels, source)
        for name, labels in y.items()
    }


def _output_codes(names: list[str] | None, integers: bool, y: Any, source: str) -> Any:
    if not (integers and names and all(name.lstrip("-").isdigit() for name in names)):
        return y
    return as_class_indices(y, names, source)


def _data_examples(info: ModelInfo, data: Path, split: str, skip_bad: bool) -> Examples:
    """All the examples of the --data file or folder, whose classes must be the model's."""
    from dlcli.data.load import load_dataset

    if not data.exists():
        raise DataError(f"data file not found: {data}")
    try:
        fill = info.columns.fill if info.columns is not None else None
        dataset = file_dataset(data, split, info)
        splits = load_dataset(dataset, Path.cwd(), 0, skip_bad=skip_bad, fill=fill)
    except (OSError, ValueError) as error:
        raise DataError(f"{data}: cannot be read ({error})") from error
    found = splits.info.output_classes or {"": splits.info.class_names}
    recorded = {"": info.class_names}
    if info.outputs is not None:
        recorded = {name: output.class_names for name, output in info.outputs.items()}
    for output, names in found.items():
        model_names = recorded.get(output)
        if names and model_names and list(names) != list(model_names):
            of = f" of `{output}`" if output else ""
            raise DataError(
                f"{data}: its classes{of} are {', '.join(names)} but the model's are "
                f"{', '.join(model_names)}"
            )
    warnings = _skipped_note(splits.info.skipped, 0)
    y = _codes(info, splits, splits.train.y, str(data))
    return Examples(splits.train.x, y, str(data), "all", warnings)


# ---------------------------------------------------------------------------------------------
# Evaluate


def _output_dir(model_path: Path, output_dir: Path | None) -> Path:
    """The folder the results go to, created and checked writable before anything slow."""
    folder = output_dir if output_dir is not None else model_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {folder}: {error.strerror or error}") from error
    if not os.access(folder, os.W_OK):
        raise OutputError(
            f"cannot write to {folder}: permission denied; write the results elsewhere with "
            "--output DIR"
        )
    return folder


def _file_names(
    folder: Path, split: str, data: Path | None, images: dict[str, bytes], model: Path
) -> dict[str, Path]:
    """Where each file goes: evaluation.json for the test split; other splits, --data files
    and exported models (`-onnx`, `-tflite`) get their own names, so the run directory's
    test-set files are not replaced."""
    suffix = "" if split == "test" else f"-{split}"
    if data is not None:
        suffix = f"-{data.stem if data.is_file() else data.name}"
    if model.suffix.lower() != ".keras":
        suffix += f"-{model.suffix.lower().lstrip('.')}"
    files = {name: folder / f"{name}{suffix}.png" for name in images}
    return files | {"evaluation": folder / f"evaluation{suffix}.json"}


def _details(
    task: Task, y: np.ndarray, outputs: np.ndarray, logits: bool, class_names: list[str] | None
) -> tuple[dict[str, Any], np.ndarray, list[str]]:
    """The Evaluation fields the outputs give, the outputs as probabilities for a classifier,
    and a note when they were logits (`logits`: the output layer's activation is linear)."""
    if task not in CLASSIFIERS:
        return {"regression": regression_errors(y, outputs)}, outputs, []
    probabilities, converted = as_probabilities(outputs, task, logits)
    notes = [logits_note(task)] if converted else []
    return classification(task, y, probabilities, class_names), probabilities, notes


def _plots(
    x: Arrays, y: np.ndarray, probabilities: np.ndarray, task: Task, details: dict[str, Any]
) -> dict[str, bytes]:
    """A classifier's PNG files: the confusion matrix, and for images its most confident
    mistakes (up to MAX_MISCLASSIFIED), each titled with its classes and confidence.

    Images are examples of shape (height, width) or (height, width, channels): every image
    model dlcli trains takes them so.
    """
    from dlcli.utils import plots

    if details.get("confusion") is None:
        return {}
    names = details["class_names"]
    files = {"confusion_matrix": plots.confusion_matrix_png(details["confusion"], names)}
    mistakes = confident_mistakes(y, probabilities, task)[:MAX_MISCLASSIFIED]
    if isinstance(x, np.ndarray) and x.ndim in (3, 4) and mistakes:
        titles = [f"true {names[t]}, predicted {names[p]} ({c:.2f})" for _, t, p, c in mistakes]
        files["misclassified"] = plots.image_grid_png(x[[m[0] for m in mistakes]], titles)
    return files


def _output_part(
    model_path: Path,
    info: ModelInfo,
    output: Output,
    examples: Examples,
    x: Arrays,
    values: np.ndarray,
    keras_metrics: dict[str, float],
) -> tuple[Evaluation, dict[str, bytes], list[str]]:
    """One output of a model of several: its Evaluation (its own Keras metrics, by their
    names without the output's), its PNG files and notes."""
    assert info.outputs is not None
    record, y = info.outputs[output.name], examples.y[output.name]
    logits = output.activation == "linear"
    details, probabilities, notes = _details(record.task, y, values, logits, record.class_names)
    prefix = f"{output.name}_"
    own = {
        name.removeprefix(prefix): value
        for name, value in keras_metrics.items()
        if name.startswith(prefix)
    }
    part = Evaluation(
        model_path, examples.source, examples.split, record.task, rows(x), own, **details
    )
    return part, _plots(x, y, probabilities, record.task, details), notes


def _results(
    model: Any, path: Path, info: ModelInfo, examples: Examples, x: Arrays, *, exported: bool
) -> tuple[dict[str, float], dict[str, Any], dict[str, bytes], list[str], dict[str, Evaluation]]:
    """The metrics, the Evaluation fields, PNG files and notes of the outputs, and for a
    model of several outputs an Evaluation of each.

    `model` is the Keras model (the loss and compiled metrics come from Keras), or when
    `exported` a file's runtime (dlcli.inference.runtimes: each output's accuracy or mean
    absolute error come from dlcli)."""
    if exported:
        outputs = [Output(name, ()) for name in info.outputs or [""]]
        predicted = model.run(x)
        metrics = _exported_metrics(info, examples.y, predicted)
        if info.outputs is None:
            predicted = predicted[0]
        said = [
            f"{path.name} runs in its own runtime: the loss and compiled metrics need Keras "
            "(evaluate the .keras file for them)"
        ]
    else:
        outputs = describe_outputs(model)
        y = in_order(examples.y, [output.name for output in outputs])  # as Keras takes them
        metrics, predicted = score(model, x, y, info.spec.fit.batch_size)
        said = []
    assert predicted is not None
    keras_metrics = metrics
    parts: dict[str, Evaluation] = {}
    if info.outputs is None:
        assert isinstance(info.task, Task)  # one output: not "multioutput"
        logits = not exported and outputs_are_logits(model)
        details, probs, notes = _details(info.task, examples.y, predicted, logits, info.class_names)
        images = _plots(x, examples.y, probs, info.task, details)
    else:
        details, images, notes = {}, {}, []
        for output, values in zip(outputs, predicted, strict=True):
            parts[output.name], drawn, said = _output_part(
                path, info, output, examples, x, values, keras_metrics
            )
            images |= {f"{image}-{output.name}": png for image, png in drawn.items()}
            notes += [f"{output.name}: {note}" for note in said]
    return keras_metrics, details, images, [*said, *notes], parts


def _exported_metrics(info: ModelInfo, y: Arrays, predicted: list[np.ndarray]) -> dict[str, float]:
    """What dlcli computes of an exported model's outputs: each classifier's accuracy, each
    regression's mean absolute error (the loss and compiled metrics need Keras)."""
    metrics = {}
    for (name, task), values in zip(info.output_tasks().items(), predicted, strict=True):
        labels = y[name] if name else y
        key = f"{name}_" if name else ""
        if task in (Task.multiclass, Task.binary):
            guessed = top_classes(values, task)
            metrics[f"{key}accuracy"] = float(np.mean(guessed == true_classes(labels, task)))
        elif task == Task.regression:
            metrics[f"{key}mae"] = float(np.mean(np.abs(values.reshape(labels.shape) - labels)))
    return metrics


def evaluate(
    model_path: Path | str,
    *,
    split: str = "test",
    data: Path | None = None,
    output_dir: Path | None = None,
    skip_bad: bool = False,
) -> Evaluation:
    """Evaluates a dlcli model on a split of the data it was trained on, or on `data`.

    The model file, its dlcli.json, the output folder and the data are checked before
    TensorFlow is imported. evaluation.json, and for classifiers confusion_matrix.png (plus
    misclassified.png for images), are written atomically beside the model or in `output_dir`.

    Args:
        model_path: A `.keras` file saved by `dlcli train` (its dlcli.json names the dataset), or
            an `.onnx` or `.tflite` file exported from one (run without TensorFlow).
        split: `"test"`, `"validation"` or `"train"`; a dataset without test data is
            evaluated on its training data, with a warning.
        data: A `.npz` or `.csv` file, or a folder of class folders of images, evaluated
            whole instead of a split; its classes must be the model's.
        output_dir: The folder for the files; the model's folder when None.
        skip_bad: Leave out image files that cannot be read (on when training left some out).

    Returns:
        An `Evaluation`: Keras's metrics, per-class scores, confusion matrix, ROC AUC or
        regression errors, the files written and the warnings.

    Raises:
        ModelFileError: the model file is missing, unsafe or not a consistent dlcli model.
        DataError: the data is missing or does not fit the model.
        OutputError: the results cannot be written.

    Example:
        evaluate("runs/mnist-1/model.keras").metrics  # {'accuracy': 0.9781, 'loss': 0.0712}
    """
    from dlcli.model import artifact
    from dlcli.utils.atomic import atomic_write

    path, exported = Path(model_path), Path(model_path).suffix.lower() in EXPORTED_SUFFIXES
    info: ModelInfo | None
    if exported:  # its runtime, without TensorFlow
        info, model = open_exported(path)
    else:
        checked = artifact.inspect(model_path)
        path, info = checked.path, checked.info
    assert info is not None  # inspect requires dlcli.json
    folder = _output_dir(path, output_dir)
    examples = load_examples(info, path, split, data, skip_bad=skip_bad)
    if rows(examples.x) == 0:
        raise DataError(f"{data or examples.source}: the {examples.split} split holds no examples")
    if exported:  # a runtime takes arrays: a stream's examples (windows) are decoded whole
        whole = examples.x
        if isinstance(whole, ExampleStream):
            whole = whole.decode(np.arange(len(whole)))
        x = with_channel_axes(whole, info.input_shapes())
    else:
        model = artifact.load(checked).model
        if info.columns is not None and info.columns.encoded:  # raw columns, by name
            from dlcli.model.feature_space import as_tensors

            x = as_tensors(model, examples.x)
        else:
            x = check_examples(
                str(data or examples.source), examples.x, examples.y, model, info.spec.compile
            )
    keras_metrics, details, images, notes, parts = _results(
        model, path, info, examples, x, exported=exported
    )
    files = _file_names(folder, examples.split, data, images, path)
    evaluation = Evaluation(
        path,
        examples.source,
        examples.split,
        info.task,
        rows(x),
        keras_metrics,
        files=files,
        warnings=[*examples.warnings, *notes],
        outputs=parts,
        **details,
    )
    for name, png in images.items():
        atomic_write(files[name], png)
    artifact.write_json(files["evaluation"], evaluation.to_dict())
    return evaluation
