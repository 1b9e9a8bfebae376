"""Spec.dataset -> Splits (numpy arrays) + DatasetInfo, checked before training.

`load_dataset` reads the one source a spec names (a Keras dataset, an .npz file, CSV files,
image folders, text folders or inline values) through its module in this package, then splits
off the validation and test data the spec asks for. The shared types live in `dlcli.data.common`.
Neither this module nor `common` imports numpy or the spec's pydantic classes at import time:
`dlcli validate` imports it for `check_files`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

from dlcli.data.common import (
    Loaded,
    Split,
    Splits,
    digest,
    flat,
    resolve_path,
    take,
)
from dlcli.errors import DataError

if TYPE_CHECKING:
    from dlcli.spec.schema import DatasetSpec


def check_files(spec: DatasetSpec, base_dir: Path, spec_file: Path | None = None) -> None:
    """Refuse a spec whose data files or image folders do not exist, before anything is read.

    Args:
        spec: the spec's `dataset`; a Keras dataset (`name`) or `inline` data has no files.
        base_dir: the spec's folder, which relative paths are relative to.
        spec_file: the spec file, named in the message.

    Raises:
        DataError: for the first missing file or folder: its absolute path and the spec key
            that names it.

    Example:

    >>> from dlcli.spec.schema import DatasetSpec
    >>> dataset = DatasetSpec(csv={"train": "train.csv"})
    >>> check_files(dataset, Path("/nowhere"), Path("configs/x.yaml"))
    Traceback (most recent call last):
    ...
    dlcli.errors.DataError: dataset file not found: /nowhere/train.csv (dataset.csv.train in configs/x.yaml)
    """  # noqa: E501
    named: list[tuple[str, str | None, bool]] = []  # key path, path, whether it is a folder
    if spec.npz is not None:
        named.append(("dataset.npz", spec.npz.path, False))
    sources = (("csv", spec.csv), ("images", spec.images), ("text_folders", spec.text_folders))
    for kind, source in sources:
        for split in ("train", "validation", "test") if source is not None else ():
            named.append((f"dataset.{kind}.{split}", getattr(source, split), kind != "csv"))
    for key, path, is_folder in named:
        if path is None:
            continue
        resolved = Path(os.path.abspath(resolve_path(path, base_dir)))
        if resolved.is_dir() if is_folder else resolved.is_file():
            continue
        where = key if spec_file is None else f"{key} in {spec_file}"
        what = "folder" if is_folder else "file"
        raise DataError(f"dataset {what} not found: {resolved} ({where})")


def _split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out the last `fraction` of a shuffled copy (Keras's validation_split takes the tail)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(split))
    cut = len(split) - int(round(len(split) * fraction))
    if cut <= 0 or cut >= len(split):
        raise DataError(
            f"a split of {fraction} leaves no data on one side ({len(split)} examples in total)"
        )
    keep, held = order[:cut], order[cut:]
    weights = (None, None) if split.w is None else (split.w[keep], split.w[held])
    return Split(take(split.x, keep), take(split.y, keep), weights[0]), Split(
        take(split.x, held), take(split.y, held), weights[1]
    )


def load_dataset(
    spec: DatasetSpec,
    base_dir: Path,
    seed: int,
    *,
    skip_bad: bool = False,
    fill: dict[str, float] | None = None,
    stream: bool = False,
) -> Splits:
    """Load the dataset a spec names, as train, validation and test splits of numpy arrays.

    A source without test data gives a test split of `test_split` of the training data, or
    none: then `Splits.test` is the training data and `test_is_train` says so. Validation
    data is split off by `validation_split` unless the source has its own. Both splits are
    drawn from a permutation seeded by `seed`, so a run can be repeated.

    Args:
        spec: the spec's `dataset`: exactly one of `name`, `npz`, `csv`, `images`,
            `text_folders`, `inline`.
        base_dir: the spec's folder; relative paths in the spec are relative to it.
        seed: the run's seed, for the test and validation splits.
        skip_bad: leave out image files that cannot be decoded (counted in `info.skipped`)
            instead of refusing the dataset.
        stream: image folders may give `dlcli.data.image_stream.ImageFiles` in place of
            arrays, decoded a batch at a time (training; see `load_images`).

    Returns:
        The splits and `DatasetInfo`: source, class names, image description, feature
        names, split sizes and the digest of the train and test arrays (for dlcli.json).
        Time windows are always `dlcli.data.time_windows.Windows` in place of x.

    Raises:
        DataError: a file is missing or unreadable, arrays do not match, or a split leaves
            no data on one side; one line naming the file, key or split.
        DownloadError: a Keras dataset could not be downloaded from any source.

    Example:
        splits = load_dataset(spec.dataset, Path("configs"), seed=42)
        splits.train.x.shape, splits.info.class_names
    """
    train, validation, test, info = _read_source(
        spec, base_dir, skip_bad=skip_bad, fill=fill, stream=stream
    )
    test_is_train = False
    if test is None and spec.test_split:
        train, test = _split_off(train, spec.test_split, seed)
    if validation is None and spec.validation_split:
        train, validation = _split_off(train, spec.validation_split, seed + 1)
    if test is None:
        test, test_is_train = train, True
    sizes = {"train": len(train), "test": 0 if test_is_train else len(test)}
    if validation is not None:
        sizes["validation"] = len(validation)
    if not info.digest:  # image folders give the digest of their files
        arrays = [array for data in (train.x, train.y, test.x, test.y) for array in flat(data)]
        info = dataclasses.replace(info, digest=digest(*arrays))
    info = dataclasses.replace(info, sizes=sizes)
    return Splits(train, test, validation, test_is_train, info)


def _read_source(
    spec: DatasetSpec,
    base_dir: Path,
    *,
    skip_bad: bool,
    fill: dict[str, float] | None,
    stream: bool,
) -> Loaded:
    """(train, validation or None, test or None, info) from the one source the spec names."""
    if spec.name:
        from dlcli.data.keras_datasets import load

        return load(spec)
    if spec.npz:
        from dlcli.data.npz import load_npz

        return load_npz(spec.npz, base_dir)
    if spec.csv and spec.csv.windows:
        from dlcli.data.time_windows import load_windows

        return load_windows(spec, base_dir)
    if spec.csv:
        from dlcli.data.csv_tables import load_csv

        return load_csv(spec.csv, base_dir, fill=fill)
    if spec.images:
        from dlcli.data.image_folders import load_images

        return load_images(spec.images, base_dir, skip_bad=skip_bad, stream=stream)
    if spec.text_folders:
        from dlcli.data.text_folders import load_text_folders

        return load_text_folders(spec.text_folders, base_dir)
    from dlcli.data.inline import load_inline

    assert spec.inline is not None
    return load_inline(spec.inline)
