"""Plain helpers the test modules import: tiny specs and data, the CLI in a subprocess with an
empty HOME or in-process, the tiny trained models' data, hand-made model files and dlcli.json
documents. Fixtures are in conftest.py; no test module imports another."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


# ---------------------------------------------------------------------------------------------
# The tiny spec and its data


TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"npz": "data.npz"},
    "model": {"input": [4], "layers": [{"Dense": {"units": 3, "activation": "softmax"}}]},
    "compile": {
        "optimizer": "rmsprop",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"epochs": 1, "batch_size": 8},
}


def _merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def tiny_spec(**changes: Any) -> str:
    """The YAML text of a tiny classifier of `data.npz` (4 features, 3 classes, 1 epoch of
    batches of 8), with `changes` merged in key by key (a mapping merges into the mapping it
    replaces, a list or scalar replaces, None removes the key).

    Example: `tiny_spec(fit={"epochs": 3}, compile={"metrics": None})`.
    """
    spec = _merged(TINY_SPEC, changes)
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=1000)


def tiny_arrays(
    rows: int = 32,
    *,
    test_rows: int = 0,
    features: int = 4,
    classes: int = 2,
    label: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded normal features (float32) and learnable labels: `x[:, 0] > 0` (2 classes), plus
    `x[:, 1] > 1` (3 classes), or `label(x)`; `rows` in x_train/y_train, then `test_rows` in
    x_test/y_test when there are any."""
    x = np.random.default_rng(0).normal(size=(rows + test_rows, features)).astype("float32")
    if label is not None:
        y = label(x)
    else:
        y = (x[:, 0] > 0).astype("int64")
        if classes == 3:
            y = y + (x[:, 1] > 1)
    arrays = {"x_train": x[:rows], "y_train": y[:rows]}
    if test_rows:
        arrays |= {"x_test": x[rows:], "y_test": y[rows:]}
    return arrays


def write_tiny_data(
    folder: Path, rows: int = 32, *, name: str = "data.npz", spec: str | None = None, **options: Any
) -> Path:
    """`folder/name` (data.npz) of `tiny_arrays(rows, **options)`, and `folder/spec.yaml` when
    `spec` is given; the .npz file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / name, **tiny_arrays(rows, **options))
    if spec is not None:
        (folder / "spec.yaml").write_text(spec)
    return folder / name


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """The bytes of an .npz file of `arrays`."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# A small search: the iris CSV files shipped in configs/data, 3 trials of 3 epochs.
IRIS = REPO / "configs" / "data"
SEARCH = """\
name: tiny
dataset:
  csv: {train: data/iris_train.csv, test: data/iris_test.csv, label: species}
  validation_split: 0.25
model:
  input: [4]
  layers:
    - Normalization
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 3
  batch_size: 16
search:
  metric: val_accuracy
  trials: 3
  space:
    model.layers[1].Dense.units: {int: [4, 32], log: true}
    compile.optimizer.Adam.learning_rate: {float: [1.0e-3, 1.0e-1], log: true}
"""


def write_search_spec(folder: Path, text: str = SEARCH, name: str = "tiny.yaml") -> Path:
    """The spec in `folder`, with the iris CSV files in `folder/data` (its paths are relative)."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        shutil.copy(IRIS / f"iris_{split}.csv", folder / "data")
    (folder / name).write_text(text)
    return folder / name


# ---------------------------------------------------------------------------------------------
# The CLI: in a subprocess with an empty HOME, or in-process


def home_env(home: Path, **changes: str) -> dict[str, str]:
    """This process's environment (its dlcli cache and Keras home included) with HOME at `home`,
    no XDG cache and no COLUMNS (piped output is never wrapped), and `changes` added."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "COLUMNS")}
    return env | {"HOME": str(home)} | changes


@dataclass(frozen=True)
class Ran:
    """A finished `dlcli` subprocess: exit code, output and wall time in seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def dlcli_command() -> list[str]:
    """The installed console script, as a user types it (python -m dlcli where there is none)."""
    script = Path(sys.executable).parent / "dlcli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dlcli"]


def run_cli(
    arguments: Sequence[object],
    env: Mapping[str, str] | None,
    cwd: Path,
    *,
    timeout: float = 600,
    importtime: bool = False,
    umask: int = -1,
) -> Ran:
    """Run `dlcli ARGUMENTS` in a subprocess in `cwd`: the installed console script, or
    `python -X importtime -m dlcli` with `importtime`. `env` is the whole environment (the
    `user_env` fixture for the end-to-end tier); None is `home_env(cwd / "home")`, an empty HOME
    with the test's own dlcli cache."""
    command = [*dlcli_command(), *(str(argument) for argument in arguments)]
    if importtime:
        command = [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "dlcli",
            *command[len(dlcli_command()) :],
        ]
    started = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else home_env(cwd / "home"),
        cwd=cwd,
        timeout=timeout,
        umask=umask,
        check=False,
    )
    seconds = time.perf_counter() - started
    return Ran(result.returncode, result.stdout, result.stderr, seconds)


def invoke(arguments: Sequence[str], **options: Any) -> Any:
    """`dlcli ARGUMENTS` in-process (Typer's CliRunner); its click Result."""
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    return CliRunner().invoke(app, list(arguments), **options)


def accuracy_of(stdout: str) -> float:
    found = re.search(r"On the test set: .*accuracy (\d\.\d+)", stdout)
    assert found, stdout
    return float(found.group(1))


def synthetic_dataset(name: str, rows: int = 64) -> tuple[tuple, tuple]:
    """Learnable stand-ins with the shapes and dtypes of `keras.datasets.<name>.load_data()`."""
    rng = np.random.default_rng(0)
    shapes = {
        "mnist": ((28, 28), 10),
        "fashion_mnist": ((28, 28), 10),
        "cifar10": ((32, 32, 3), 10),
        "cifar100": ((32, 32, 3), 100),
    }
    if name in shapes:
        shape, classes = shapes[name]
        y = rng.integers(0, classes, size=rows).astype("uint8")
        x = rng.integers(0, 60, size=(rows, *shape)).astype("uint8")
        x[np.arange(rows), y % shape[0]] = 255  # the label is written into the image
    elif name in ("imdb", "reuters"):
        classes = 2 if name == "imdb" else 46
        y = rng.integers(0, classes, size=rows).astype("int64")
        x = np.empty(rows, dtype=object)
        for row in range(rows):
            x[row] = [1, int(y[row]) + 2, *rng.integers(3, 500, size=20).tolist()]
    else:
        features = 13 if name == "boston_housing" else 8
        x = rng.normal(size=(rows, features)) * 10 + 50
        y = x[:, 0] * 0.5 + rng.normal(size=rows)
    cut = rows * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


# ---------------------------------------------------------------------------------------------
# The tiny trained models' data (the `tiny_models` fixture trains them)


class QuietView:
    """A training progress view that shows nothing."""

    def start(self, *args: object, **keywords: object) -> None: ...
    def note(self, *args: object) -> None: ...
    def start_epoch(self, *args: object) -> None: ...
    def advance(self, *args: object) -> None: ...
    def end_epoch(self, *args: object) -> None: ...
    def stop(self) -> None: ...


BAR_CLASSES = ("bottom", "middle", "top")  # sorted, as the class folders are read
BAR_ROWS = {"top": 1, "middle": 3, "bottom": 5}


def bar_image(row: int, rng: np.random.Generator, *, dark_on_light: bool = False) -> Any:
    """An 8x8 grayscale PIL image: a light two-pixel bar starting at `row`, on dark."""
    from PIL import Image

    pixels = rng.integers(0, 40, size=(8, 8))
    pixels[row : row + 2, 1:7] = rng.integers(200, 256, size=(2, 6))
    if dark_on_light:
        pixels = 255 - pixels
    return Image.fromarray(pixels.astype(np.uint8))


def write_bars(folder: Path) -> None:
    """Class folders of bar images; one test image of the `top` class shows a middle bar."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in BAR_CLASSES:
            (folder / split / name).mkdir(parents=True)
            for index in range(count):
                bar_image(BAR_ROWS[name], rng).save(folder / split / name / f"{index}.png")
    bar_image(BAR_ROWS["middle"], rng).save(folder / "test" / "top" / "odd.png")


def write_answers(folder: Path) -> None:
    """CSV files with features a, b and the label `answer` (yes when a + b > 0)."""
    rng = np.random.default_rng(1)
    for split, rows in (("train", 60), ("test", 24)):
        x = rng.normal(size=(rows, 2)).round(3)
        lines = ["a,b,answer"] + [f"{a},{b},{'yes' if a + b > 0 else 'no'}" for a, b in x.tolist()]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_line(folder: Path) -> None:
    """An .npz file of y = x . (1, -2, 0.5) + 3 plus a little noise."""
    rng = np.random.default_rng(2)
    arrays = {}
    for split, rows in (("train", 48), ("test", 16)):
        x = rng.normal(size=(rows, 3)).astype("float32")
        y = (x @ np.array([1.0, -2.0, 0.5]) + 3 + rng.normal(0, 0.1, rows)).astype("float32")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(folder / "line.npz", **arrays)


TINY_SPECS = {
    "bars": """
name: bars
seed: 1
dataset:
  images: {train: bars/train, test: bars/test, image_size: [8, 8], color_mode: grayscale}
  validation_split: 0.25
model:
  input: [8, 8, 1]
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Flatten
    - Dense: {units: 3, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.05}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 6, batch_size: 3}
""",
    "answer": """
name: answer
seed: 1
dataset:
  csv: {train: answers/train.csv, test: answers/test.csv, label: answer}
model:
  input: [2]
  layers:
    - Dense: {units: 1, activation: sigmoid}
compile:
  optimizer: {Adam: {learning_rate: 0.1}}
  loss: binary_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 6, batch_size: 4}
""",
    "line": """
name: line
seed: 1
dataset:
  npz: line/line.npz
model:
  input: [3]
  layers:
    - Dense: {units: 1}
compile:
  optimizer: {Adam: {learning_rate: 0.1}}
  loss: mse
  metrics: [mae]
  jit_compile: false
fit: {epochs: 8, batch_size: 4}
""",
}


@dataclass(frozen=True)
class TinyModels:
    folder: Path  # the project folder: specs, data and runs/
    bars: Path  # 8x8 grayscale images in class folders: a light bar at the top, middle or bottom
    answer: Path  # a binary classifier of CSV rows (features a, b; label `answer`: yes or no)
    line: Path  # a linear regression from an .npz file


BAD_MODELS = {
    "https://example.com/model.keras": "Error: https://example.com/model.keras: only local "
    ".keras files are loaded, not URLs",
    "folder": "Error: folder: is a folder, not a .keras model file",
    "old.h5": "Error: old.h5: legacy HDF5 models are not loaded; re-save it as .keras with Keras 3",
    "missing.keras": "Error: model file not found: missing.keras",
    "empty.keras": "Error: empty.keras: the file is empty",
    "text.keras": "Error: text.keras: not a Keras model file (not a zip archive: truncated or "
    "corrupt?)",
    "truncated.keras": "Error: truncated.keras: not a Keras model file (not a zip archive: "
    "truncated or corrupt?)",
    "lambda.keras": "Error: lambda.keras: contains a Lambda layer, which would run code; refused",
    "plain.keras": "Error: plain.keras: has no dlcli.json, so it was not trained by dlcli; "
    "`dlcli predict --model` can still use it",
}


def without_metadata(source: Path, path: Path) -> None:
    """A copy of the model file `source` without its dlcli.json: a plain Keras model."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            if item.filename != "dlcli.json":
                new.writestr(item, old.read(item))


def make_bad_models(folder: Path, good: Path) -> None:
    """The files of BAD_MODELS in `folder`, made from the good model file `good`."""
    import keras

    (folder / "folder").mkdir()
    (folder / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "text.keras").write_text("not a model\n")
    (folder / "truncated.keras").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(folder / "lambda.keras")
    without_metadata(good, folder / "plain.keras")


# ---------------------------------------------------------------------------------------------
# dlcli.json documents and model files made by hand

DIGEST = "0" * 64
ARTIFACT_SPEC = {
    "name": "tiny",
    "seed": 1,
    "dataset": {"inline": {"x": [[0, 0], [1, 1]], "y": [0, 1]}},
    "model": {"input": [2], "layers": [{"Dense": {"units": 1}}]},
    "compile": {"optimizer": "sgd", "loss": "mse"},
    "fit": {"epochs": 1, "batch_size": 2},
}


def info_document(**changes: Any) -> dict[str, Any]:
    """dlcli.json of a regression model with 2 inputs and 1 output, as train writes it."""
    training = {"epochs": 1, "fit_seconds": 0.5, "total_seconds": 1.0, "device": "CPU"}
    document = {
        "format": 1,
        "versions": {"dlcli": "0.1.0", "keras": "3", "tensorflow": "2"},
        "spec": ARTIFACT_SPEC,
        "dataset": {
            "source": "inline",
            "digest": DIGEST,
            "sizes": {"train": 2, "test": 0},
            "skipped": 0,
        },
        "task": "regression",
        "class_names": None,
        "input": {"shape": [2], "dtype": "float32", "feature_names": None, "image": None},
        "metrics": {"evaluated_on": "train", "train": {"loss": 0.25}, **training},
        "training": training,
    }
    document.update(changes)
    return document


def model_info(**changes: Any) -> Any:
    """`info_document(**changes)` as a typed ModelInfo."""
    from dlcli.model.artifact import ModelInfo

    return ModelInfo.model_validate(info_document(**changes))


IMAGE = {"height": 4, "width": 4, "channels": 1, "polarity": None, "framing": None}


def classifier_document(**changes: Any) -> dict[str, Any]:
    """dlcli.json of the `classifier` fixture: 4x4 grayscale images in, classes a, b, c out."""
    spec = {
        **ARTIFACT_SPEC,
        "model": {"input": [4, 4, 1], "layers": ["Flatten", {"Dense": {"units": 3}}]},
        "compile": {"optimizer": "sgd", "loss": "sparse_categorical_crossentropy"},
    }
    document = info_document(
        spec=spec,
        task="multiclass",
        class_names=["a", "b", "c"],
        input={"shape": [4, 4, 1], "dtype": "uint8", "feature_names": None, "image": IMAGE},
    )
    document.update(changes)
    return document


def with_dlcli_json(source: Path, target: Path, document: Any) -> Path:
    """A copy of the model file `source` whose dlcli.json is `document`."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            if item.filename != "dlcli.json":
                new.writestr(item, old.read(item))
        new.writestr("dlcli.json", json.dumps(document))
    return target


def copied(model: Path, folder: Path) -> Path:
    """A tiny model's run folder copied into `folder` (without its export), so that a test's
    exports do not change the shared one."""
    run = shutil.copytree(model.parent, folder / model.parent.name)
    for stale in ("model.onnx", "export.json"):
        (run / stale).unlink(missing_ok=True)
    return run / "model.keras"


# What a finished run's folder holds, and nothing else (no backup, no temporary file).
FINISHED_RUN_FILES = [
    "confusion_matrix.png",
    "curves.png",
    "export.json",
    "history.csv",
    "metrics.json",
    "model.keras",
    "model.onnx",
    "run.json",
    "spec.yaml",
]


def write_photos(folder: Path, count: int = 8) -> None:
    """Two classes of `count` noisy 32x32 photos each, told apart by one bright channel."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("cat", "dog")):
        (folder / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
            pixels[..., label] = 230
            Image.fromarray(pixels).save(folder / name / f"{index}.png")
