"""`.npz` files: the arrays of each split, by key, checked as numbers with one row per example."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.common import DatasetInfo, Loaded, Split, numeric_rows, resolve_path
from dlcli.errors import DataError
from dlcli.spec.schema import NpzSource


def _array(file: np.lib.npyio.NpzFile, path: Path, key: str) -> np.ndarray:
    """One member of an .npz file, or a DataError saying why it cannot be read."""
    try:
        array = file[key]
    except (ValueError, zlib.error, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, ValueError) and _holds_objects(file, key):
            raise DataError(
                f"{path}: `{key}` holds Python objects (pickle), which are refused; "
                "save plain numeric arrays"
            ) from error
        raise DataError(
            f"{path}: the array `{key}` cannot be read ({error}); the file is damaged, "
            "save it again"
        ) from error
    if not isinstance(array, np.ndarray):  # a member that is not an .npy array comes as bytes
        raise DataError(
            f"{path}: `{key}` is not a numpy array (.npy) member; save the arrays with numpy.savez"
        )
    return array


def _holds_objects(file: np.lib.npyio.NpzFile, key: str) -> bool:
    """Whether the header of an .npy member names an object dtype, which needs pickle."""
    name = key if key.endswith(".npy") else f"{key}.npy"
    archive = file.zip
    assert archive is not None  # None only once the NpzFile is closed; it is being read
    try:
        with archive.open(name if name in archive.namelist() else key) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(member)
            else:
                header = np.lib.format.read_array_header_2_0(member)
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error):
        return False
    return bool(header[2].hasobject)


def _named(file: np.lib.npyio.NpzFile, path: Path, key: str, *, labels: bool) -> Any:
    """The array `key`, or the arrays `key_NAME` as {NAME: array} (one per model input or
    output), or None when the file has neither."""
    prefix = f"{key}_"
    named = sorted(member for member in file.files if member.startswith(prefix))
    if key in file.files and named:
        raise DataError(
            f"{path}: holds both `{key}` and `{named[0]}`; give one array `{key}`, or one "
            f"`{prefix}NAME` per model input or output"
        )
    if key in file.files:
        return numeric_rows(_array(file, path, key), f"{path}: `{key}`", labels=labels)
    if not named:
        return None
    return {
        member[len(prefix) :]: numeric_rows(
            _array(file, path, member), f"{path}: `{member}`", labels=labels
        )
        for member in named
    }


def _pair(file: np.lib.npyio.NpzFile, path: Path, x_key: str, y_key: str) -> Split | None:
    x, y = _named(file, path, x_key, labels=False), _named(file, path, y_key, labels=True)
    if x is None and y is None:
        return None
    if x is None or y is None:
        missing = x_key if x is None else y_key
        raise DataError(f"{path}: has `{y_key if x is None else x_key}` but not `{missing}`")
    counts = {
        f"{key}_{name}" if name else key: len(array)
        for key, data in ((x_key, x), (y_key, y))
        for name, array in (data.items() if isinstance(data, dict) else [("", data)])
    }
    if len(set(counts.values())) > 1:
        (first, rows), (other, others) = next(iter(counts.items())), _differing(counts)
        raise DataError(f"{path}: `{first}` has {rows} rows but `{other}` has {others}")
    if not next(iter(counts.values())):
        raise DataError(f"{path}: `{x_key}` and `{y_key}` have no rows; expected one per example")
    return Split(x, y)


def _differing(counts: dict[str, int]) -> tuple[str, int]:
    """The first array whose rows differ from the first array's."""
    first = next(iter(counts.values()))
    return next((name, rows) for name, rows in counts.items() if rows != first)


def load_npz(source: NpzSource, base_dir: Path) -> Loaded:
    """x/y arrays for train (required), validation and test from one `.npz` file.

    A model with several inputs takes `x_train_NAME` for each input NAME (and `x_val_NAME`,
    `x_test_NAME`); one with several outputs `y_train_NAME` for each output, likewise.

    Raises:
        DataError: one line naming the file and, where it applies, the array: a missing file,
            a file that is not an .npz archive (a .npy file, text), a damaged member, arrays
            that are 0-d, empty, not numbers (strings, Python objects, complex numbers) or
            whose rows differ between x and y.
    """
    path = resolve_path(source.path, base_dir)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    try:
        file = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # ValueError: not a zip, nor an .npy
        raise DataError(
            f"{path}: not an .npz file; expected a zip archive of arrays, as numpy.savez writes"
        ) from error
    if not isinstance(file, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: holds one .npy array, not an .npz archive of named arrays; save them "
            f"with numpy.savez(path, {source.x_train}=..., {source.y_train}=...)"
        )
    with file:
        train = _pair(file, path, source.x_train, source.y_train)
        if train is None:
            raise DataError(
                f"{path}: no `{source.x_train}`/`{source.y_train}` arrays; it holds "
                f"{', '.join(file.files) or 'nothing'} (set dataset.npz.x_train/y_train)"
            )
        validation = _pair(file, path, source.x_validation, source.y_validation)
        test = _pair(file, path, source.x_test, source.y_test)
    return train, validation, test, DatasetInfo(source=source.path)
