"""CSV tables: a header row naming the columns, then one example per row.

`read_rows` is the one CSV reader of dlcli: training and `evaluate --data` read through
`load_csv`, and `dlcli predict` reads its .csv inputs with it too.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import numpy as np

from dlcli.data.common import DatasetInfo, Split, resolve_path
from dlcli.errors import DataError, DlcliError
from dlcli.spec.messages import suggest
from dlcli.spec.schema import CsvSource

CHUNK_ROWS = 1024  # rows converted to numbers at a time
SNIFFED_CHARACTERS = 4096  # the start of a file that tells its delimiter
DELIMITERS = ",;\t"

LabelKind = Literal["integer", "number", "class"]


@dataclass(frozen=True)
class _Table:
    """One CSV file: its feature columns as numbers, its label columns as written, their lines."""

    path: Path
    feature_names: list[str]
    x: np.ndarray
    labels: dict[str, list[str]]  # label column -> its texts
    lines: list[int]
    weights: np.ndarray | None = None


def load_csv(
    source: CsvSource, base_dir: Path
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test examples from CSV files (paths relative to `base_dir`).

    The features are the columns that `source.features` lists, else every column of the
    training file but the labels (and weights), found by name in every file; x is float32 of
    shape (rows, features). With `source.inputs` x is a mapping of each model input to its
    columns, and with `source.labels` y maps each model output to its label column.
    Labels that are all integers stay int64 (class indices; no class names); labels that are
    all numbers become float32 regression targets; any other labels are class names, sorted,
    and y holds their int64 indices. Blank lines (and rows of empty cells) are skipped, and a
    UTF-8 byte order mark is allowed.

    Raises:
        DataError: one line naming the file, and the line and column where they apply: a
            missing or empty file, no data rows, an unknown label or feature column, a row with
            the wrong number of columns, a value that is not a finite number, a validation or
            test label that the training file does not have, or an integer label beyond 64 bits.
    """
    # A mapping of one input or output reads as `features` or `label`: one array, not by name.
    inputs = source.inputs if source.inputs is not None and len(source.inputs) > 1 else None
    outputs = source.labels if source.labels is not None and len(source.labels) > 1 else None
    label = next(iter(source.labels.values())) if source.labels else source.label or "label"
    columns = list(outputs.values()) if outputs else [label]
    features = source.features
    if source.inputs is not None:
        features = list(dict.fromkeys(c for names in source.inputs.values() for c in names))
    keys = (
        "dataset.csv.labels" if source.labels else "dataset.csv.label",
        "dataset.csv.inputs" if source.inputs else "dataset.csv.features",
    )
    train = _read_table(
        resolve_path(source.train, base_dir), columns, features, keys, source.weight
    )
    others = [
        None
        if path is None
        else _read_table(resolve_path(path, base_dir), columns, train.feature_names, keys)
        for path in (source.validation, source.test)
    ]
    tables = [table for table in (train, *others) if table is not None]
    kinds = {column: _label_kind(column, tables) for column in columns}
    classes = {
        column: sorted(set(train.labels[column])) if kind == "class" else None
        for column, kind in kinds.items()
    }

    def split(table: _Table) -> Split:
        y = {c: _labels(table, c, kinds[c], classes[c], train.path) for c in columns}
        x = table.x if inputs is None else _by_input(table, inputs)
        labels = y[label] if outputs is None else {o: y[c] for o, c in outputs.items()}
        return Split(x, labels, table.weights)

    validation, test = (None if table is None else split(table) for table in others)
    info = DatasetInfo(
        source=source.train,
        class_names=classes[label] if outputs is None else None,
        feature_names=train.feature_names if inputs is None else None,
        output_classes=None if outputs is None else {o: classes[c] for o, c in outputs.items()},
        input_features=inputs,
    )
    return split(train), validation, test, info


def _by_input(table: _Table, inputs: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The feature columns of a table as one array per model input, by the input's name."""
    index = {name: position for position, name in enumerate(table.feature_names)}
    return {
        name: np.ascontiguousarray(table.x[:, [index[column] for column in columns]])
        for name, columns in inputs.items()
    }


def _label_kind(column: str, tables: list[_Table]) -> LabelKind:
    """What a label column holds in all the files: integers, numbers, or else class names."""
    texts = [text for table in tables for text in table.labels[column]]
    if all(_is_integer(text) for text in texts):
        return "integer"
    return "number" if all(is_number(text) for text in texts) else "class"


def read_rows(
    path: Path | str, error: type[DlcliError] = DataError, data: bytes | None = None
) -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file that hold something, each with its line number (from 1).

    The delimiter (comma, semicolon or tab) is sniffed from the start of the file with
    `csv.Sniffer`, as sqlite-utils' `rows_from_file` does; a comma when the sniffer cannot
    tell (a single column). Only the delimiter is taken from the sniffer: its guesses of
    quoting are unreliable on a few lines, so quoting is the standard one (`"a ""b"" c"`).
    A UTF-8 byte order mark is allowed; blank lines and rows of empty cells are skipped.
    With `data`, the rows are read from those bytes (e.g. an upload) and `path` only names them.

    Raises:
        `error` (DataError by default): the file is not UTF-8 text, or not well-formed CSV
            (naming the line).
    """
    try:
        with _opened(path, data) as file:
            delimiter = _delimiter(file.read(SNIFFED_CHARACTERS))
            file.seek(0)
            reader = csv.reader(file, delimiter=delimiter, strict=True)
            for row in reader:
                if "".join(row).strip():
                    yield reader.line_num, row
    except UnicodeDecodeError as problem:
        raise error(f"{path}: not UTF-8 text ({problem.reason}); save it as UTF-8") from None
    except csv.Error as problem:
        raise error(f"{path}, line {reader.line_num}: {problem}") from None


def _opened(path: Path | str, data: bytes | None) -> TextIO:
    """The text of a CSV file, or of `data` when given."""
    if data is None:
        return Path(path).open(newline="", encoding="utf-8-sig")
    return io.StringIO(data.decode("utf-8-sig"), newline="")


def _delimiter(sample: str) -> str:
    """The delimiter the rows of `sample` share: one of DELIMITERS, a comma when unclear."""
    if len(sample) == SNIFFED_CHARACTERS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def is_header(row: list[str]) -> bool:
    """Whether a first row names columns: it holds a cell that is not a number.

    >>> is_header(["a", "b"]), is_header(["1.5", "-2"])
    (True, False)
    """
    return not all(is_number(cell) for cell in row)


def _read_table(
    path: Path,
    label_columns: list[str],
    feature_names: list[str] | None,
    keys: tuple[str, str],
    weight: str | None = None,
) -> _Table:
    """Read and check one CSV file; `feature_names` None means every column but the labels
    (and the `weight` column, read as non-negative weights when given). `keys` are the spec
    keys that name the label and the feature columns, for the messages."""
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    rows = read_rows(path)
    first = next(rows, None)
    if first is None:
        raise DataError(
            f"{path}: the file is empty; expected a header row naming the columns, "
            "then one row per example"
        )
    header = [name.strip() for name in first[1]]
    feature_names = _feature_names(header, label_columns, feature_names, path, weight, keys[1])
    label_indices = {
        label: _column(header, label, "label", path, keys[0]) for label in label_columns
    }
    feature_columns = [_column(header, name, "feature", path, keys[1]) for name in feature_names]
    names = [*feature_names, *([weight] if weight is not None else [])]
    if weight is not None:
        feature_columns.append(_column(header, weight, "weight", path, "dataset.csv.weight"))
    chunks: list[np.ndarray] = []
    labels: dict[str, list[str]] = {label: [] for label in label_columns}
    lines: list[int] = []
    chunk: list[list[str]] = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: {len(row)} columns, but the header has {len(header)}"
            )
        for label, column in label_indices.items():
            text = row[column].strip()
            if not text:
                raise DataError(f"{path}, line {line}: the label `{label}` is empty")
            labels[label].append(text)
        lines.append(line)
        chunk.append([row[column] for column in feature_columns])
        if len(chunk) == CHUNK_ROWS:
            chunks.append(_numbers(chunk, lines[-len(chunk) :], names, path))
            chunk = []
    if chunk:
        chunks.append(_numbers(chunk, lines[-len(chunk) :], names, path))
    if not lines:
        raise DataError(f"{path}: no data rows after the header")
    x = np.concatenate(chunks)
    if weight is None:
        return _Table(path, feature_names, x, labels, lines)
    weights = x[:, -1]
    if (weights < 0).any():
        line = lines[int(np.argmax(weights < 0))]
        raise DataError(f"{path}, line {line}, column `{weight}`: a weight must be 0 or more")
    return _Table(path, feature_names, x[:, :-1], labels, lines, weights)


def _feature_names(
    header: list[str],
    label_columns: list[str],
    feature_names: list[str] | None,
    path: Path,
    weight: str | None,
    key: str,
) -> list[str]:
    """The feature columns: those listed, else every column but the labels and weight; checked."""
    if feature_names is None:
        feature_names = [name for name in header if name not in (*label_columns, weight)]
        if "" in feature_names:
            raise DataError(
                f"{path}: column {header.index('') + 1} has no name in the header "
                "(a saved DataFrame index? save it with index=False, or list the "
                "feature columns in dataset.csv.features)"
            )
    for column, role in (*((label, "label") for label in label_columns), (weight, "weight")):
        if column in feature_names:
            raise DataError(
                f"{path}: `{column}` is both the {role} and a feature; leave it out of {key}"
            )
    if not feature_names:
        listed = " and ".join(f"`{label}`" for label in label_columns)
        raise DataError(f"{path}: no feature columns besides the label {listed}")
    return feature_names


def _column(header: list[str], name: str, role: str, path: Path, key: str) -> int:
    """The index of the column `name`, or a DataError that lists the columns there are."""
    count = header.count(name)
    if count == 1:
        return header.index(name)
    if count > 1:
        raise DataError(f"{path}: {count} columns are named `{name}`; give each a unique name")
    hint = suggest(name, header)
    raise DataError(
        f"{path}: no {role} column `{name}`{hint}; the columns are {_listing(header)} (see {key})"
    )


def _listing(names: list[str]) -> str:
    """`a`, `b`, `c`: the first ten names, then how many more there are."""
    shown = ", ".join(f"`{name}`" for name in names[:10])
    return f"{shown} and {len(names) - 10} more" if len(names) > 10 else shown


def _numbers(rows: list[list[str]], lines: list[int], names: list[str], path: Path) -> np.ndarray:
    """A chunk of feature values as float32, or a DataError naming the first bad value."""
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        try:
            values = np.array(rows, dtype=np.float32)
        except ValueError:
            values = None
        if values is not None and np.isfinite(values).all():
            return values
        for row, line in zip(rows, lines, strict=True):
            for name, text in zip(names, row, strict=True):
                where = f"{path}, line {line}, column `{name}`"
                if not text.strip():
                    raise DataError(f"{where}: the value is empty; fill in or drop missing values")
                try:
                    number = np.float32(text)
                except ValueError:
                    raise DataError(f"{where}: `{text}` is not a number") from None
                if not np.isfinite(number):
                    raise DataError(f"{where}: `{text}` is not a finite float32 number")
        raise DataError(f"{path}: the features cannot be read as numbers")


def _is_integer(text: str) -> bool:
    """Whether `int()` reads the text."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def is_number(text: str) -> bool:
    """Whether `float()` reads the text (NaN and infinity included; they are refused later)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _labels(
    table: _Table,
    column: str,
    kind: LabelKind,
    class_names: list[str] | None,
    train_path: Path,
) -> np.ndarray:
    """One label column of a file: int64 integers, float32 targets or int64 class indices."""
    texts = table.labels[column]
    if kind == "class":
        assert class_names is not None
        index = {name: position for position, name in enumerate(class_names)}
        for text, line in zip(texts, table.lines, strict=True):
            if text not in index:
                raise DataError(
                    f"{table.path}, line {line}: the label `{text}` does not occur in the "
                    f"training file {train_path}, whose labels are {_listing(class_names)}"
                )
        return np.array([index[text] for text in texts], dtype=np.int64)
    if kind == "integer":
        integers = [int(text) for text in texts]
        limits = np.iinfo(np.int64)
        for number, text, line in zip(integers, texts, table.lines, strict=True):
            if not limits.min <= number <= limits.max:
                raise DataError(
                    f"{table.path}, line {line}: the label `{text}` does not fit a class index "
                    "(a 64-bit integer); integer labels are class indices 0, 1, 2, ..."
                )
        return np.array(integers, dtype=np.int64)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        targets = np.array([float(text) for text in texts], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(targets))
    if bad.size:
        line, text = table.lines[bad[0]], texts[bad[0]]
        raise DataError(
            f"{table.path}, line {line}: the label `{text}` is not a finite float32 number"
        )
    return targets
