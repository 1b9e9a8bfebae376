"""CSV tables: a header row naming the columns, then one example per row."""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.data import DatasetInfo, Split
from dlcli.errors import DataError
from dlcli.spec import CsvSource

CHUNK_ROWS = 1024  # rows converted to numbers at a time


@dataclass(frozen=True)
class _Table:
    """One CSV file: its features as numbers, its labels as written, and their line numbers."""

    path: Path
    x: np.ndarray
    labels: list[str]
    lines: list[int]


def load_csv(
    source: CsvSource, base_dir: Path
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test examples from CSV files (paths relative to `base_dir`).

    The features are the columns listed in `source.features`, else every column but the label;
    x is float32 of shape (rows, features). Labels that are all integers stay int64 (class
    indices, class_names None); labels that are all numbers become float32 regression targets;
    other labels are class names, sorted, and y holds their indices; a validation or test label
    missing from the training labels is an error. Blank lines are skipped; a UTF-8 byte order
    mark is allowed.

    Raises:
        DataError: one line naming the file (and the line and column where it applies): a
            missing or empty file, no data rows, an unknown label or feature column, a row with
            the wrong number of columns, a value that is not a finite number, or an unknown label.
    """
    paths = {
        split: base_dir / Path(path).expanduser()
        for split, path in (
            ("train", source.train),
            ("validation", source.validation),
            ("test", source.test),
        )
        if path is not None
    }
    train = _read_table(paths["train"], source.label, source.features)
    feature_names = _header(paths["train"])
    feature_names = source.features or [name for name in feature_names if name != source.label]
    tables = {"train": train} | {
        split: _read_table(path, source.label, feature_names)
        for split, path in paths.items()
        if split != "train"
    }
    texts = [text for table in tables.values() for text in table.labels]
    class_names: list[str] | None = None
    if all(_is_integer(text) for text in texts):
        labels = {split: np.array([int(text) for text in table.labels], dtype=np.int64)
                  for split, table in tables.items()}
    elif all(_is_number(text) for text in texts):
        labels = {split: _targets(table, source.label) for split, table in tables.items()}
    else:
        class_names = sorted(set(train.labels))
        labels = {
            split: _class_indices(table, class_names, paths["train"])
            for split, table in tables.items()
        }
    splits = {split: Split(table.x, labels[split]) for split, table in tables.items()}
    info = DatasetInfo(source=source.train, class_names=class_names, feature_names=feature_names)
    return splits["train"], splits.get("validation"), splits.get("test"), info
