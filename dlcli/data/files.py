"""Local array sources: `.npz` files and small inline tables in the spec (the XOR points)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dlcli.data import DatasetInfo, Split, check_finite
from dlcli.errors import DataError
from dlcli.spec import InlineSource, NpzSource

Loaded = tuple[Split, Split | None, Split | None, DatasetInfo]


def resolve_path(path: str, base_dir: Path) -> Path:
    """A spec path, relative to the spec's folder unless absolute."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base_dir / resolved


def _pair(file: np.lib.npyio.NpzFile, path: Path, x_key: str, y_key: str) -> Split | None:
    present = [key in file.files for key in (x_key, y_key)]
    if not any(present):
        return None
    if not all(present):
        missing = y_key if present[0] else x_key
        raise DataError(f"{path}: has `{x_key if present[1] else y_key}` but not `{missing}`")
    try:
        x, y = file[x_key], file[y_key]
    except ValueError as error:  # object arrays need pickle, which is refused
        raise DataError(
            f"{path}: `{x_key}`/`{y_key}` holds Python objects (pickle), which are refused; "
            "save plain numeric arrays"
        ) from error
    if len(x) != len(y):
        raise DataError(f"{path}: `{x_key}` has {len(x)} rows but `{y_key}` has {len(y)}")
    return Split(x, y)


def load_npz(source: NpzSource, base_dir: Path) -> Loaded:
    """x/y arrays for train (required), validation and test from one `.npz` file."""
    path = resolve_path(source.path, base_dir)
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as file:
            train = _pair(file, path, source.x_train, source.y_train)
            if train is None:
                raise DataError(
                    f"{path}: no `{source.x_train}`/`{source.y_train}` arrays; it holds "
                    f"{', '.join(file.files) or 'nothing'} (set dataset.npz.x_train/y_train)"
                )
            validation = _pair(file, path, source.x_validation, source.y_validation)
            test = _pair(file, path, source.x_test, source.y_test)
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from error
    return train, validation, test, DatasetInfo(source=source.path)


def load_inline(source: InlineSource) -> Loaded:
    """Arrays written in the spec itself."""

    def split(x: list, y: list, name: str) -> Split:
        try:
            arrays = np.asarray(x, dtype="float32"), np.asarray(y)
        except ValueError as error:
            raise DataError(f"dataset.inline.{name}: not a rectangular table of numbers") from error
        if len(arrays[0]) != len(arrays[1]):
            raise DataError(
                f"dataset.inline: {name} has {len(arrays[0])} rows but its labels {len(arrays[1])}"
            )
        check_finite(f"dataset.inline.{name}", arrays[0])
        return Split(*arrays)

    train = split(source.x, source.y, "x")
    test = None
    if source.x_test is not None or source.y_test is not None:
        test = split(source.x_test or [], source.y_test or [], "x_test")
    return train, None, test, DatasetInfo(source="inline")
