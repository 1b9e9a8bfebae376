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
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli import artifact
from dlcli.data import ImageInfo
from dlcli.data.tables import is_number
from dlcli.errors import InputError, ModelFileError
from dlcli.evaluate import as_probabilities, logits_note, outputs_are_logits

if TYPE_CHECKING:
    from dlcli.artifact import ModelInfo

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
    image: ImageInfo | None = None
    feature_names: list[str] | None = None


def _single_shape(shape: Any, path: Path, what: str) -> tuple[int | None, ...]:
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelFileError(
                f"{path}: predict takes models with one {what}; it has {len(shape)}"
            )
        shape = shape[0]
    return tuple(shape[1:])


def describe(info: ModelInfo) -> InputDescription:
    """How inputs must look, from dlcli.json alone (no TensorFlow)."""
    shape = tuple(info.input.shape)
    image = info.input.image
    found = _image_shape(shape)
    return InputDescription(
        shape=shape,
        task=info.task,
        class_names=info.class_names,
        image=ImageInfo(**image.model_dump()) if image else ImageInfo(*found) if found else None,
        feature_names=info.input.feature_names,
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
# Choosing the model (no --model)

SAMPLED_INPUTS = 16  # input files looked at (headers only) to tell which models can take them
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclass(frozen=True)
class _InputFile:
    """What one input file holds, read from its header: an image or rows of values."""

    image: tuple[int, int, bool] | None = None  # height, width, grayscale
    columns: list[str] | None = None  # a .csv header
    shape: tuple[int, ...] | None = None  # a .npy array, or (columns,) of a .csv

    def describe(self) -> str:
        if self.image is not None:
            height, width, grey = self.image
            return f"{height}x{width} {'grayscale' if grey else 'colour'} images"
        assert self.shape is not None
        return f"rows of {self.shape[-1]} values" if len(self.shape) <= 2 else "arrays"


def _peek(path: Path) -> _InputFile | None:
    """The header of an input file; None when it cannot be read (reported when predicted)."""
    from PIL import Image

    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return _InputFile(shape=np.load(path, mmap_mode="r", allow_pickle=False).shape)
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as handle:
                first = next(row for row in csv.reader(handle) if any(c.strip() for c in row))
            header = None if all(is_number(cell) for cell in first) else [c.strip() for c in first]
            return _InputFile(columns=header, shape=(len(first),))
        with Image.open(path) as image:
            return _InputFile(image=(image.height, image.width, image.mode in _GREY_MODES))
    except (OSError, ValueError, StopIteration, csv.Error, UnicodeDecodeError, SyntaxError):
        return None


def _fit(info: ModelInfo, found: _InputFile) -> int:
    """How well a model takes an input: 3 exactly, 2 same size, 1 same colours, 0 not at all."""
    image, shape = info.input.image, info.input.shape
    if found.image is not None:
        if image is None:
            return 0
        height, width, grey = found.image
        same_size = (height, width) == (image.height, image.width)
        same_colours = grey == (image.channels == 1)
        return 3 if same_size and same_colours else 2 if same_size else int(same_colours)
    if image is not None or found.shape is None:
        return 0
    if found.columns is not None and info.input.feature_names:
        return 3 * all(name in found.columns for name in info.input.feature_names)
    rows = found.shape if found.columns is not None else found.shape[-len(shape) :]
    return 3 * (len(found.shape) >= len(shape) and list(rows) == shape)


def choose_model(files: list[Path], runs_dir: Path) -> tuple[artifact.ModelFile, str]:
    """The newest `runs_dir/*/model.keras` that takes `files`, decided from dlcli.json alone.

    A model that takes the images at their size and in their colours comes before one that
    takes their size only, which comes before one that takes their colours only; models that
    take rows must have the features of the .csv header (or as many columns) or the .npy shape.

    Returns:
        The chosen model file and what it takes, e.g. "28x28 grayscale images".

    Raises:
        ModelFileError: no model under `runs_dir`, or none takes the inputs (naming what the
            newest take).
    """
    paths = sorted(
        (path for path in runs_dir.glob("*/model.keras") if path.is_file()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    if not paths:
        raise ModelFileError(
            f"no --model given and no {runs_dir}/*/model.keras found; "
            "train one with `dlcli train SPEC` or pass --model PATH"
        )
    found = [peeked for path in files[:SAMPLED_INPUTS] if (peeked := _peek(path)) is not None]
    candidates: list[artifact.ModelFile] = []
    for path in paths:
        with suppress(ModelFileError):
            checked = artifact.inspect(path)
            candidates.append(checked)
    best, best_fit = None, 0
    for checked in candidates:
        assert checked.info is not None
        fit = min((_fit(checked.info, item) for item in found), default=3)
        if fit > best_fit:
            best, best_fit = checked, fit
    if best is not None and best.info is not None:
        return best, best.info.input.describe()
    if not candidates:
        artifact.inspect(paths[0])  # raises: why the newest model cannot be used
    newest = "; ".join(
        f"{checked.path} takes {checked.info.input.describe()}"
        for checked in candidates[:3]
        if checked.info is not None
    )
    wanted = found[0].describe() if found else "these inputs"
    raise ModelFileError(f"no model in {runs_dir}/ takes {wanted}: {newest}; pass --model PATH")


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


@dataclass
class _Runtime:
    """The Keras model, loaded when the first examples are ready (so an input that cannot be
    read is answered without TensorFlow), and whether its outputs were logits."""

    checked: artifact.ModelFile
    model: Any = None
    logits: bool = False
    converted: bool = False

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self.model is None:
            self.model = artifact.load(self.checked, require_metadata=False).model
            self.logits = outputs_are_logits(self.model)
        return np.asarray(self.model.predict(batch, batch_size=PREDICT_BATCH_SIZE, verbose=0))


def _predict_batch(
    runtime: _Runtime,
    arrays: list[np.ndarray],
    sources: list[tuple[str, int | None]],
    description: InputDescription,
    top_k: int,
) -> list[Prediction]:
    batch = np.concatenate(arrays)  # uint8 pixels or float rows: the model casts them
    outputs = runtime.predict(batch)
    if description.task == "regression":
        values = outputs.reshape(len(outputs), -1)
        return [
            Prediction(name, row, values=[float(v) for v in value])
            for (name, row), value in zip(sources, values, strict=True)
        ]
    outputs, converted = as_probabilities(
        outputs, description.task, runtime.logits or runtime.converted
    )
    runtime.converted |= converted
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

    Without `model_path` the newest model under `runs_dir` that takes the inputs is used
    (`choose_model`). `raw` skips the polarity and MNIST framing steps (the image is only
    converted and resized). The model file and the inputs are checked before TensorFlow is
    imported: a dlcli model is described by its dlcli.json, and Keras loads it only once the
    first inputs are read.

    Raises:
        ModelFileError: the model file is missing, unsafe or inconsistent, or no model fits.
        InputError: right away when the only input fails.
    """
    notes: list[str] = []
    if model_path is None:
        named, problems = expand_inputs(inputs, IMAGE_SUFFIXES + TABLE_SUFFIXES)
        if not named:
            return _nothing_predicted(problems)
        checked, takes = choose_model(named, runs_dir)
        notes.append(f"Model: {checked.path} (the newest in {runs_dir}/ that takes {takes})")
    else:
        checked = artifact.inspect(model_path, require_metadata=False)
    runtime = _Runtime(checked)
    if checked.info is None:  # a plain Keras model: its shape says what it takes
        runtime.model = artifact.load(checked, require_metadata=False).model
        runtime.logits = outputs_are_logits(runtime.model)
        description, assumed = describe_inputs(runtime.model, None, checked.path)
        notes += assumed
    else:
        description = describe(checked.info)
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
            predictions += _predict_batch(runtime, arrays, sources, description, top_k)
            arrays, sources = [], []
    if arrays:
        predictions += _predict_batch(runtime, arrays, sources, description, top_k)
    if runtime.converted:
        notes.append(logits_note(description.task))
    if not predictions and len(problems) == 1:
        raise InputError(problems[0])
    return PredictResult(checked.path, description.task, predictions, problems, notes)


def _nothing_predicted(problems: list[str]) -> PredictResult:
    """No input file was found: the one problem as InputError, or each listed."""
    if len(problems) == 1:
        raise InputError(problems[0])
    return PredictResult(Path(), "", [], problems)
