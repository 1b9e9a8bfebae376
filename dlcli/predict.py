"""Input files -> model inputs (images, .csv, .npy) -> ranked predictions.

Everything about how inputs must look comes from the dlcli.json inside the model: the input
shape, and for images their size, channels, polarity and framing, so an image is
turned into exactly what the model was trained on (`dlcli.images.to_array`). A plain Keras
model without dlcli.json is used when its input shape is unambiguous, and the assumption is
said. Files that cannot be read are reported one by one; the others are still predicted.
"""

from __future__ import annotations

import csv
import glob
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.tables import is_number
from dlcli.errors import InputError, ModelFileError

PREDICT_BATCH_SIZE = 1024
WORKERS = min(4, os.cpu_count() or 1)  # threads converting images (numpy and PIL release the GIL)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".npy")
MAX_CSV_BYTES = 256 * 1024**2
DEFAULT_RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class Prediction:
    input: str
    row: int | None = None  # the row of a .csv or .npy file, counted from 0
    labels: list[str] = field(default_factory=list)  # top-k, most probable first
    probabilities: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # regression outputs

    @property
    def name(self) -> str:
        return self.input if self.row is None else f"{self.input}[{self.row}]"


@dataclass(frozen=True)
class PredictResult:
    model_path: Path
    task: str
    predictions: list[Prediction]
    problems: list[str] = field(default_factory=list)  # one line per input that failed
    notes: list[str] = field(default_factory=list)  # the model chosen, what was assumed

    def to_dict(self) -> dict[str, Any]:
        def item(prediction: Prediction) -> dict[str, Any]:
            result: dict[str, Any] = {"input": prediction.input, "row": prediction.row}
            if self.task == "regression":
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


@dataclass(frozen=True)
class InputDescription:
    """What the model takes: from dlcli.json, or assumed from a plain Keras model's shape."""

    shape: tuple[int | None, ...]  # without the batch axis
    task: str
    class_names: list[str] | None
    image: Any = None  # dlcli.data.ImageInfo
    feature_names: list[str] | None = None


def newest_model(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The most recently written `runs_dir/*/model.keras`."""
    models = [path for path in runs_dir.glob("*/model.keras") if path.is_file()]
    if not models:
        raise ModelFileError(
            f"no --model given and no {runs_dir}/*/model.keras found; "
            "train one with `dlcli train SPEC` or pass --model PATH"
        )
    return max(models, key=lambda path: path.stat().st_mtime)


def _single_shape(shape: Any, path: Path, what: str) -> tuple[int | None, ...]:
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelFileError(
                f"{path}: predict takes models with one {what}; it has {len(shape)}"
            )
        shape = shape[0]
    return tuple(shape[1:])


def describe_inputs(
    model: Any, metadata: dict[str, Any] | None, path: Path
) -> tuple[InputDescription, list[str]]:
    """How inputs must look, and notes on what was assumed when dlcli.json is missing."""
    from dlcli.data import ImageInfo

    shape = _single_shape(model.input_shape, path, "input")
    units = _single_shape(model.output_shape, path, "output")[-1] or 1
    if metadata is not None:
        described = metadata.get("input") or {}
        image = described.get("image")
        info = None if image is None else ImageInfo(**image)
        if info is None and _image_shape(shape) is not None:
            info = ImageInfo(*_image_shape(shape))  # type: ignore[misc]
        return (
            InputDescription(
                shape=shape,
                task=metadata.get("task", "multiclass"),
                class_names=metadata.get("class_names"),
                image=info,
                feature_names=described.get("feature_names"),
            ),
            [],
        )
    image_shape = _image_shape(shape)
    if image_shape is None and (len(shape) != 1 or shape[0] is None):
        raise ModelFileError(
            f"{path}: has no dlcli.json and its input shape {shape} does not say what it "
            "takes; train the model with dlcli, or give it images (height, width[, channels]) "
            "or rows of features"
        )
    last = model.layers[-1] if model.layers else None
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    task = "multiclass" if units > 1 else "binary" if activation == "sigmoid" else "regression"
    if image_shape is not None:
        height, width, channels = image_shape
        kind = {1: "grayscale", 3: "RGB", 4: "RGBA"}[channels]
        inputs = f"{height}x{width} {kind} images with values 0..255, not inverted or re-framed"
    else:
        inputs = f"rows of {shape[0]} features"
    outputs = {
        "multiclass": f"its {units} outputs are the scores of classes 0..{units - 1}",
        "binary": "its sigmoid output is the probability of class 1",
        "regression": "its output is a value (regression)",
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
    if any(size is None for size in shape):
        return None
    if len(shape) == 2:
        return int(shape[0]), int(shape[1]), 1  # type: ignore[arg-type]
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return int(shape[0]), int(shape[1]), int(shape[2])  # type: ignore[arg-type]
    return None


# ---------------------------------------------------------------------------------------------
# Inputs


def expand_inputs(inputs: list[str], suffixes: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Files named, found in folders (recursively, with `suffixes`) or matched by glob patterns."""
    files: dict[Path, None] = {}
    problems: list[str] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
            if not found:
                problems.append(f"{text}: no {', '.join(suffixes)} files in this folder")
            files.update(dict.fromkeys(found))
        elif path.exists():
            files[path] = None
        elif glob.has_magic(text):
            found = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
            )
            if not found:
                problems.append(f"{text}: no files match this pattern")
            files.update(dict.fromkeys(found))
        else:
            problems.append(f"{text}: no such file")
    return list(files), problems


def _read_csv(path: Path, description: InputDescription) -> np.ndarray:
    """Rows of features; a header row selects the model's features by name."""
    if len(description.shape) != 1:
        raise InputError(
            f"{path}: a .csv file holds rows of features, but the model takes inputs of shape "
            f"{description.shape}"
        )
    features = int(description.shape[0] or 0)
    if path.stat().st_size > MAX_CSV_BYTES:
        raise InputError(f"{path}: larger than {MAX_CSV_BYTES // 1024**2} MiB; split it")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from error
    if not rows:
        raise InputError(f"{path}: the file holds no rows")
    header = None if all(is_number(cell) for cell in rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    columns = list(range(len(rows[0])))
    if header and description.feature_names:
        missing = [name for name in description.feature_names if name not in header]
        if missing:
            raise InputError(
                f"{path}: has no column {', '.join(missing)} (the model takes "
                f"{', '.join(description.feature_names)})"
            )
        columns = [header.index(name) for name in description.feature_names]
    if len(columns) != features:
        raise InputError(
            f"{path}: rows have {len(columns)} values but the model takes {features} features"
        )
    values = np.empty((len(body), features), dtype="float32")
    for number, row in enumerate(body):
        try:
            values[number] = [float(row[column]) for column in columns]
        except (ValueError, IndexError):
            line = number + (2 if header else 1)
            raise InputError(
                f"{path}, line {line}: expected {features} numbers, found {row!r}"
            ) from None
    if not np.isfinite(values).all():
        raise InputError(f"{path}: holds NaN or Inf values")
    return values


def _read_npy(path: Path, description: InputDescription) -> np.ndarray:
    """One example of the model's input shape, or a stack of them."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise InputError(f"{path}: holds Python objects (pickle), which are refused") from error
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy file ({error})") from error
    expected = description.shape

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) == len(expected) and all(
            e is None or e == s for e, s in zip(expected, shape, strict=True)
        )

    if fits(array.shape):
        array = array[None]
    elif not fits(array.shape[1:]):
        raise InputError(
            f"{path}: holds an array of shape {array.shape}, but the model takes "
            f"{expected} or a stack of them"
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise InputError(f"{path}: holds {array.dtype} values, not numbers")
    return array


def _rows(path: Path, description: InputDescription) -> np.ndarray:
    """The examples of a .npy or .csv file; an image file for a model that takes rows fails."""
    if path.suffix.lower() == ".npy":
        return _read_npy(path, description)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, description)
    raise InputError(
        f"{path}: the model takes rows of {description.shape[0]} features (.csv or .npy "
        "files), not images"
    )


def _start(pool: ThreadPoolExecutor, path: Path, description: InputDescription, raw: bool) -> Any:
    """Begin reading one file: its examples, or a Future of an image's pixels."""
    from dlcli import images

    if path.suffix.lower() in TABLE_SUFFIXES or description.image is None:
        return _rows(path, description)
    image = images.open_image(path)  # on this thread only: see dlcli.images
    return pool.submit(images.to_array, image, description.image, raw=raw)


def read_inputs(
    files: list[Path], description: InputDescription, raw: bool
) -> Iterator[tuple[Path, np.ndarray | InputError]]:
    """Each file's examples, shaped as the model takes them, or the InputError it raised.

    Files come back in order. Images are decoded on this thread and converted by
    `dlcli.images.to_array` on worker threads, a few at a time, while the next are decoded.
    """
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        window: deque[tuple[Path, Any]] = deque()

        def finish() -> tuple[Path, np.ndarray | InputError]:
            path, pending = window.popleft()
            if not isinstance(pending, Future):
                return path, pending
            try:
                pixels = pending.result()
            except InputError as error:
                return path, error
            if len(description.shape) == 2 and pixels.ndim == 3:
                pixels = pixels[..., 0]  # e.g. MNIST: the model takes (28, 28)
            return path, pixels[None]

        for path in files:
            try:
                window.append((path, _start(pool, path, description, raw)))
            except InputError as error:
                window.append((path, error))
            if len(window) > 2 * WORKERS:
                yield finish()
        while window:
            yield finish()


# ---------------------------------------------------------------------------------------------
# Ranking


def rank(
    outputs: np.ndarray, description: InputDescription, top_k: int
) -> list[tuple[list[str], list[float]]]:
    """Top-k (labels, probabilities) per example, most probable first."""
    outputs = outputs.reshape(len(outputs), -1).astype("float64")
    if description.task == "binary":
        outputs = np.concatenate([1.0 - outputs[:, :1], outputs[:, :1]], axis=1)
    names = description.class_names
    if not names or len(names) != outputs.shape[1]:
        names = [str(index) for index in range(outputs.shape[1])]
    order = np.argsort(-outputs, axis=1, kind="stable")[:, : max(1, top_k)]
    return [
        ([names[i] for i in row], [float(outputs[n, i]) for i in row])
        for n, row in enumerate(order)
    ]


def _predict_batch(
    model: Any,
    arrays: list[np.ndarray],
    sources: list[tuple[str, int | None]],
    description: InputDescription,
    top_k: int,
) -> list[Prediction]:
    batch = np.concatenate(arrays)  # uint8 pixels or float rows: the model casts them
    outputs = np.asarray(model.predict(batch, batch_size=PREDICT_BATCH_SIZE, verbose=0))
    if description.task == "regression":
        values = outputs.reshape(len(outputs), -1)
        return [
            Prediction(name, row, values=[float(v) for v in value])
            for (name, row), value in zip(sources, values, strict=True)
        ]
    ranked = rank(outputs, description, top_k)
    return [
        Prediction(name, row, labels=labels, probabilities=probabilities)
        for (name, row), (labels, probabilities) in zip(sources, ranked, strict=True)
    ]


def predict(
    inputs: list[str],
    *,
    model_path: Path | str | None = None,
    top_k: int = 3,
    raw: bool = False,
    runs_dir: Path = DEFAULT_RUNS_DIR,
) -> PredictResult:
    """Predict every input file; a file that fails is reported and the others still predicted.

    Without `model_path` the newest model under `runs_dir` is used. `raw` skips the polarity
    and MNIST framing steps (the image is only converted and resized). Raises InputError right
    away when the only input fails.
    """
    from dlcli import artifact

    notes: list[str] = []
    if model_path is None:
        model_path = newest_model(runs_dir)
        notes.append(f"Model: {model_path} (the newest in {runs_dir}/)")
    loaded = artifact.load(model_path, require_metadata=False)
    description, assumed = describe_inputs(loaded.model, loaded.metadata, loaded.path)
    notes += assumed
    accepted = TABLE_SUFFIXES if description.image is None else IMAGE_SUFFIXES
    files, problems = expand_inputs(inputs, accepted)
    predictions: list[Prediction] = []
    arrays: list[np.ndarray] = []
    sources: list[tuple[str, int | None]] = []
    for path, examples in read_inputs(files, description, raw):
        if isinstance(examples, InputError):
            problems.append(str(examples))
            continue
        arrays.append(examples)
        rows = range(len(examples)) if path.suffix.lower() in TABLE_SUFFIXES else [None]
        sources += [(str(path), row) for row in rows]
        if len(sources) >= PREDICT_BATCH_SIZE:
            predictions += _predict_batch(loaded.model, arrays, sources, description, top_k)
            arrays, sources = [], []
    if arrays:
        predictions += _predict_batch(loaded.model, arrays, sources, description, top_k)
    if not predictions and len(problems) == 1:
        raise InputError(problems[0])
    return PredictResult(loaded.path, description.task, predictions, problems, notes)
