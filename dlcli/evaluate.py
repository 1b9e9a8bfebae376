"""Metrics of a trained model on a dataset split: the numbers behind `dlcli evaluate`.

`evaluate` needs nothing but the model file: the dlcli.json inside names the dataset (with the
seed that made the splits), the task and the class names. Loss and the compiled metrics come
from Keras's own `evaluate` (or `test_on_batch`, see `score`); the per-class report, confusion
matrix, ROC AUC and regression errors are computed from the model's outputs on the same examples.
"""

from __future__ import annotations

import math
import os
import zipfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.checks import check_examples
from dlcli.errors import DataError, OutputError
from dlcli.spec import DatasetSpec

if TYPE_CHECKING:
    from dlcli.artifact import ModelInfo

SPLITS = ("test", "validation", "train")
EVALUATE_BATCH_SIZE = 1024
MOST_CONFUSED = 5
MAX_MISCLASSIFIED = 36
BINARY_THRESHOLD = 0.5  # what Keras's accuracy metrics use for a sigmoid output


# Up to this many batches, one pass runs faster eagerly than traced (tracing costs ~0.3 s).
_EAGER_MAX_BATCHES = 8
# Activations one inference batch may take.
_BATCH_BYTES = 256 * 1024 * 1024


def _batch_size(model: Any, least: int, examples: int) -> int:
    """As large as about `_BATCH_BYTES` of activations, and at least `least`.

    Each batch costs a Python round trip and each new batch shape a trace, so one pass over a
    split goes fastest in few, large batches; the activations of a batch bound its size.
    """
    try:
        shapes = [tensor.shape for tensor in model.inputs]
        shapes += [layer.output.shape for layer in model.layers]
        per_example = 4 * sum(math.prod(d or 1 for d in shape[1:]) for shape in shapes)
    except (AttributeError, ValueError, TypeError):  # nested or multi-output layers
        return max(least, EVALUATE_BATCH_SIZE)
    return max(least, min(examples, _BATCH_BYTES // max(per_example, 1)))


def score(
    model: Any, x: Any, y: Any, least_batch: int, *, outputs: bool = True
) -> tuple[dict[str, float], np.ndarray | None]:
    """Keras's loss and compiled metrics on (x, y), and the model's outputs if `outputs`.

    Each is one pass in large batches (at least `least_batch`). Tracing a function (and
    compiling it with XLA) costs more than it saves when it runs a few times, so a pass of at
    most `_EAGER_MAX_BATCHES` batches runs eagerly, and a pass of one batch goes through
    `test_on_batch`/`predict_on_batch`, which skip building a dataset: on MNIST's test set
    (one batch of 10,000) 0.3 s for both, against 0.6 s for `evaluate`/`predict` run eagerly.
    """
    batch_size = _batch_size(model, least_batch, len(y))
    batches = math.ceil(len(y) / batch_size)
    if batches <= _EAGER_MAX_BATCHES and model.distribute_strategy.num_replicas_in_sync == 1:
        model.run_eagerly = True
        model.make_test_function(force=True)  # fit made one for the validation data
        model.make_predict_function(force=True)
    if batches == 1:
        metrics = model.test_on_batch(x, y, return_dict=True)
        predicted = model.predict_on_batch(x) if outputs else None
    else:
        metrics = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        predicted = model.predict(x, batch_size=batch_size, verbose=0) if outputs else None
    scores = {name: float(value) for name, value in metrics.items()}
    return scores, None if predicted is None else np.asarray(predicted)


def true_classes(labels: np.ndarray, task: str) -> np.ndarray:
    """Class index per example from sparse, one-hot or 0/1 float labels."""
    labels = np.asarray(labels)
    if task == "binary":
        return (labels.reshape(-1) >= 0.5).astype("int64")
    if labels.ndim == 2 and labels.shape[1] > 1:
        return np.argmax(labels, axis=-1)
    return labels.reshape(-1).astype("int64")


def predicted_classes(probabilities: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Class index per example from the model's outputs."""
    if task == "binary":
        return (probabilities.reshape(-1) >= threshold).astype("int64")
    return np.argmax(probabilities, axis=-1)


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, task: str) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    predicted = predicted_classes(probabilities, task)
    classes = 2 if task == "binary" else probabilities.shape[-1]
    matrix = np.zeros((classes, classes), dtype="int64")
    np.add.at(matrix, (true_classes(labels, task), predicted), 1)
    return matrix


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def scores_from_counts(
    names: list[str], true_positives: np.ndarray, predicted: np.ndarray, support: np.ndarray
) -> tuple[list[ClassScores], dict[str, ClassScores]]:
    """Per-class precision, recall and F1, then their macro and weighted averages.

    A class that is neither present nor predicted is left out of the macro average (as
    scikit-learn does when the labels are not given).
    """
    classes = []
    for name, hits, guessed, count in zip(names, true_positives, predicted, support, strict=True):
        precision, recall = _ratio(hits, guessed), _ratio(hits, count)
        classes.append(ClassScores(name, precision, recall, _f1(precision, recall), int(count)))
    seen = [c for c, guessed in zip(classes, predicted, strict=True) if c.support or guessed]
    total = sum(c.support for c in classes)
    averages = {}
    for label, weights in (
        ("macro avg", [1.0] * len(seen)),
        ("weighted avg", [float(c.support) for c in seen]),
    ):
        weight_sum = sum(weights) or 1.0
        averages[label] = ClassScores(
            label,
            sum(w * c.precision for w, c in zip(weights, seen, strict=True)) / weight_sum,
            sum(w * c.recall for w, c in zip(weights, seen, strict=True)) / weight_sum,
            sum(w * c.f1 for w, c in zip(weights, seen, strict=True)) / weight_sum,
            total,
        )
    return classes, averages


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None when
    only one class is present."""
    positive = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank, averaged over ties
    ranks = average_rank[inverse]
    return float(
        (ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def regression_errors(targets: np.ndarray, outputs: np.ndarray) -> dict[str, float | None]:
    """MAE, MSE, RMSE and R² over every output value (R² is None for constant targets)."""
    targets = np.asarray(targets, dtype="float64").reshape(len(targets), -1)
    outputs = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    error = outputs - targets
    mse = float(np.mean(error**2))
    total = float(np.sum((targets - targets.mean(axis=0)) ** 2))
    r2 = None if total == 0 else 1.0 - float(np.sum(error**2)) / total
    return {"mae": float(np.mean(np.abs(error))), "mse": mse, "rmse": mse**0.5, "r2": r2}


def most_confused(matrix: np.ndarray, names: list[str], limit: int) -> list[tuple[str, str, int]]:
    """The largest off-diagonal counts: (true class, predicted class, count)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:limit]
    pairs = [np.unravel_index(index, off.shape) for index in order]
    return [(names[t], names[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]


@dataclass(frozen=True)
class Evaluation:
    """Everything `dlcli evaluate` reports; `to_dict` is evaluation.json."""

    model_path: Path
    data: str
    split: str
    task: str
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
        if self.task == "binary":
            result["roc_auc"] = self.roc_auc
        if self.threshold is not None:
            result["threshold"] = self.threshold
        if self.regression:
            result["regression"] = self.regression
        result["files"] = {name: str(path) for name, path in self.files.items()}
        result["warnings"] = self.warnings
        return result


# ---------------------------------------------------------------------------------------------
# Data


def _recorded_spec_dir(model_path: Path) -> list[Path]:
    """The spec's folder as the run directory's run.json records it, if it does."""
    import json

    with suppress(OSError, ValueError, AttributeError):
        folder = json.loads((model_path.parent / "run.json").read_text()).get("spec_dir")
        if isinstance(folder, str):
            return [Path(folder)]
    return []


def _relative_paths(dataset: DatasetSpec) -> list[str]:
    return [
        value
        for source in (dataset.npz, dataset.csv, dataset.images)
        if source is not None
        for value in (getattr(source, "path", None), getattr(source, "train", None))
        if value and not Path(value).expanduser().is_absolute()
    ]


def _dataset_base_dir(dataset: DatasetSpec, model_path: Path) -> Path:
    """The folder the spec's relative dataset paths start from.

    The spec's folder where the run directory's run.json records it; otherwise the folder
    `dlcli train` was run from (the run directory's parent's parent, for the default
    `output.dir: runs`) and the current folder are tried, in that order.
    """
    relative = _relative_paths(dataset)
    candidates = _recorded_spec_dir(model_path)
    candidates += [model_path.resolve().parent.parent.parent, Path.cwd()]
    if not relative:
        return candidates[0]
    for candidate in candidates:
        if all((candidate / value).exists() for value in relative):
            return candidate
    looked = ", ".join(str(candidate) for candidate in dict.fromkeys(candidates))
    raise DataError(
        f"the model was trained on {relative[0]}, which was not found relative to {looked}; "
        "run evaluate from the folder of the spec, or pass the data with --data PATH"
    )


def split_source(dataset: DatasetSpec, split: str, base_dir: Path) -> str:
    """The file, folder or Keras dataset a split comes from, as the spec names it.

    A split that the spec's `validation_split` or `test_split` holds out of the training data
    says so; `test` of a source without test data is its training data.

    Example:
        split_source(DatasetSpec(csv=CsvSource(train="a.csv", test="b.csv")), "test", Path())
        # 'b.csv'
    """
    origin: dict[str, str | None] = {}
    if dataset.name:
        origin = {
            "train": f"keras.datasets.{dataset.name} (training set)",
            "test": f"keras.datasets.{dataset.name} (test set)",
        }
    elif dataset.npz:
        npz = dataset.npz
        held: set[str] = set()
        npz_path = base_dir / Path(npz.path).expanduser()
        with (
            suppress(OSError, ValueError, zipfile.BadZipFile),
            np.load(npz_path, allow_pickle=False) as file,
        ):
            held = set(file.files)
        pairs = {
            "train": (npz.x_train, npz.y_train),
            "validation": (npz.x_validation, npz.y_validation),
            "test": (npz.x_test, npz.y_test),
        }
        origin = {
            name: f"{npz.path} ({x_key}, {y_key})"
            for name, (x_key, y_key) in pairs.items()
            if name == "train" or x_key in held
        }
    elif dataset.csv or dataset.images:
        files = dataset.csv or dataset.images
        assert files is not None
        origin = {"train": files.train, "validation": files.validation, "test": files.test}
    elif dataset.inline:
        origin = {"train": "dataset.inline (x, y)"}
        if dataset.inline.x_test is not None:
            origin["test"] = "dataset.inline (x_test, y_test)"
    found = origin.get(split)
    if found:
        return found
    train = str(origin["train"])
    fraction = {"test": dataset.test_split, "validation": dataset.validation_split}.get(split)
    if fraction:
        purpose = "as the test split" if split == "test" else "for validation"
        return f"{train}, {fraction:.0%} held out {purpose}"
    return train


def _file_dataset(path: Path, split: str, info: ModelInfo) -> DatasetSpec:
    """A DatasetSpec that reads all of `path` as its training split (for --data)."""
    from dlcli.spec import CsvSource, ImagesSource, NpzSource

    original = info.spec.dataset
    if path.is_dir():
        image = info.input.image
        if image is None:
            raise DataError(f"{path}: a folder of images, but the model was not trained on images")
        mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[image.channels]
        size = [image.height, image.width]
        return DatasetSpec(images=ImagesSource(train=str(path), image_size=size, color_mode=mode))
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as file:
            names = set(file.files)
        short = {"validation": "val"}.get(split, split)
        for x_key, y_key in ((f"x_{short}", f"y_{short}"), ("x", "y")):
            if {x_key, y_key} <= names:
                return DatasetSpec(npz=NpzSource(path=str(path), x_train=x_key, y_train=y_key))
        raise DataError(
            f"{path}: has no `x_{short}`/`y_{short}` or `x`/`y` arrays; it holds "
            f"{', '.join(sorted(names)) or 'nothing'}"
        )
    if path.suffix.lower() == ".csv":
        label = original.csv.label if original.csv else "label"
        features = original.csv.features if original.csv else None
        return DatasetSpec(csv=CsvSource(train=str(path), label=label, features=features))
    raise DataError(
        f"{path}: --data takes a .npz file, a .csv file or a folder of images "
        "(one subfolder per class)"
    )


@dataclass(frozen=True)
class Examples:
    """The examples evaluate scores, and where they came from."""

    x: np.ndarray
    y: np.ndarray
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
    from dlcli.data import load_dataset

    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}. Received: {split!r}")
    recorded = info.dataset.skipped
    skip_bad = skip_bad or recorded > 0
    if data is not None:
        if not data.exists():
            raise DataError(f"data file not found: {data}")
        try:
            splits = load_dataset(
                _file_dataset(data, split, info), Path.cwd(), 0, skip_bad=skip_bad
            )
        except (OSError, ValueError) as error:
            raise DataError(f"{data}: cannot be read ({error})") from error
        names, model_names = splits.info.class_names, info.class_names
        if names and model_names and list(names) != list(model_names):
            raise DataError(
                f"{data}: its classes are {', '.join(names)} but the model's are "
                f"{', '.join(model_names)}"
            )
        warnings = _skipped_note(splits.info.skipped, 0)
        return Examples(splits.train.x, splits.train.y, str(data), "all", warnings)
    spec = info.spec
    base_dir = _dataset_base_dir(spec.dataset, model_path)
    splits = load_dataset(spec.dataset, base_dir, spec.seed or 0, skip_bad=skip_bad)
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
    return Examples(chosen.x, chosen.y, source, split, warnings)


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


def outputs_are_logits(model: Any) -> bool:
    """Whether the model's last layer leaves its outputs linear (no softmax or sigmoid), as
    models compiled with `from_logits=True` do."""
    last = model.layers[-1] if model.layers else None
    return getattr(getattr(last, "activation", None), "__name__", "") == "linear"


def as_probabilities(outputs: np.ndarray, task: str, logits: bool) -> tuple[np.ndarray, bool]:
    """A classifier's outputs as probabilities, and whether they had to be converted.

    Logits (`logits`, or values that no probabilities have: outside [0, 1], or multiclass rows
    that do not sum to 1) go through softmax (multiclass) or sigmoid (binary, multilabel).

    Example:
        as_probabilities(np.array([[2.0, 0.0]]), "multiclass", False)
        # (array([[0.881, 0.119]]), True)
    """
    values = np.asarray(outputs, dtype="float64")
    if not logits and values.size:
        outside = values.min() < 0 or values.max() > 1
        unsummed = task == "multiclass" and not np.allclose(values.sum(axis=-1), 1, atol=1e-3)
        logits = bool(outside or unsummed)
    if not logits or task not in ("multiclass", "binary", "multilabel"):
        return outputs, False
    if task == "multiclass":
        shifted = np.exp(values - values.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True), True
    return 1 / (1 + np.exp(-values)), True


def logits_note(task: str) -> str:
    """What `as_probabilities` did, said once."""
    function = "softmax" if task == "multiclass" else "sigmoid"
    return f"the model's outputs are logits: shown through {function}"


def _file_suffix(split: str, data: Path | None) -> str:
    """evaluation.json for the test split; other splits and --data files get their own names,
    so the run directory's test-set files are not replaced by other numbers."""
    if data is not None:
        return f"-{data.stem if data.is_file() else data.name}"
    return "" if split == "test" else f"-{split}"


def _classification(
    task: str,
    y: np.ndarray,
    outputs: np.ndarray,
    class_names: list[str] | None,
) -> dict[str, Any]:
    """Per-class scores, averages, confusion matrix and (binary) ROC AUC."""
    if task == "multilabel":
        truth = np.asarray(y).reshape(len(y), -1) >= 0.5
        guessed = outputs.reshape(len(outputs), -1) >= BINARY_THRESHOLD
        names = class_names or [str(i) for i in range(truth.shape[1])]
        classes, averages = scores_from_counts(
            names, (truth & guessed).sum(axis=0), guessed.sum(axis=0), truth.sum(axis=0)
        )
        return {"classes": classes, "averages": averages, "threshold": BINARY_THRESHOLD}
    matrix = confusion_matrix(y, outputs, task)
    names = list(class_names or [])
    if len(names) != len(matrix):
        names = [str(i) for i in range(len(matrix))]
    classes, averages = scores_from_counts(
        names, np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    )
    result: dict[str, Any] = {
        "class_names": names,
        "classes": classes,
        "averages": averages,
        "confusion": matrix,
        "confused_pairs": most_confused(matrix, names, MOST_CONFUSED),
    }
    if task == "binary":
        result["threshold"] = BINARY_THRESHOLD
        result["roc_auc"] = roc_auc(true_classes(y, task), outputs)
    return result


def _misclassified(
    x: np.ndarray, y: np.ndarray, outputs: np.ndarray, task: str, names: list[str]
) -> tuple[np.ndarray, list[str]]:
    """Up to MAX_MISCLASSIFIED wrong images, the most confident mistakes first, with titles."""
    truth, guessed = true_classes(y, task), predicted_classes(outputs, task)
    if task == "binary":
        confidence = np.abs(outputs.reshape(-1) - 0.5) + 0.5
    else:
        confidence = outputs.max(axis=-1)
    wrong = np.flatnonzero(truth != guessed)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:MAX_MISCLASSIFIED]
    titles = [
        f"true {names[truth[i]]}, predicted {names[guessed[i]]} ({confidence[i]:.2f})"
        for i in wrong
    ]
    return x[wrong], titles


def evaluate(
    model_path: Path | str,
    *,
    split: str = "test",
    data: Path | None = None,
    output_dir: Path | None = None,
    skip_bad: bool = False,
) -> Evaluation:
    """Evaluate a dlcli model on a split of the data it was trained on, or on `data`.

    Writes evaluation.json, and for classifiers confusion_matrix.png (plus misclassified.png
    for image data), beside the model or in `output_dir`. The model file, its dlcli.json, the
    output folder and the data are checked before TensorFlow is imported; the files are
    written only once all of them are ready, each atomically.

    Raises:
        ModelFileError: the model file is missing, unsafe or not a consistent dlcli model.
        DataError: the data is missing or does not fit the model.
        OutputError: the results cannot be written.
    """
    from dlcli import artifact, report

    checked = artifact.inspect(model_path)
    info = checked.info
    assert info is not None  # inspect requires dlcli.json
    folder = _output_dir(checked.path, output_dir)
    examples = load_examples(info, checked.path, split, data, skip_bad=skip_bad)
    x, y, task = examples.x, examples.y, info.task
    where = str(data or examples.source)
    if len(x) == 0:
        raise DataError(f"{where}: the {examples.split} split holds no examples")
    loaded = artifact.load(checked)
    x = check_examples(where, x, y, loaded.model, info.spec.compile.loss)  # as training did
    keras_metrics, outputs = score(loaded.model, x, y, info.spec.fit.batch_size)
    assert outputs is not None
    warnings = list(examples.warnings)
    details: dict[str, Any] = {}
    if task in ("multiclass", "binary", "multilabel"):
        outputs, converted = as_probabilities(outputs, task, outputs_are_logits(loaded.model))
        if converted:
            warnings.append(logits_note(task))
        details = _classification(task, y, outputs, info.class_names)
    else:
        details["regression"] = regression_errors(y, outputs)

    suffix = _file_suffix(examples.split, data)
    images: dict[str, bytes] = {}
    if details.get("confusion") is not None:
        names = details["class_names"]
        images["confusion_matrix"] = report.confusion_matrix_png(details["confusion"], names)
        misclassified, titles = _misclassified(x, y, outputs, task, names)
        if (info.input.image is not None or x.ndim in (3, 4)) and len(misclassified):
            images["misclassified"] = report.image_grid_png(misclassified, titles)
    files = {name: folder / f"{name}{suffix}.png" for name in images}
    files["evaluation"] = folder / f"evaluation{suffix}.json"
    evaluation = Evaluation(
        model_path=loaded.path,
        data=examples.source,
        split=examples.split,
        task=task,
        examples=len(x),
        metrics=keras_metrics,
        files=files,
        warnings=warnings,
        **details,
    )
    for name, png in images.items():
        artifact.atomic_write(files[name], png)
    artifact.write_json(files["evaluation"], evaluation.to_dict())
    return evaluation
