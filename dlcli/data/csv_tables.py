"""CSV tables: a header row naming the columns, then one example per row.

This is the one CSV reader of dlcli: training and `evaluate --data` read through `load_csv`,
and `dlcli predict` reads the raw columns of a typed-column model with `read_columns` (and its
.csv rows with `read_rows`). Files are read by pyarrow's CSV reader (multi-threaded, quoted
newlines, each column with its type); where pyarrow refuses a file, or a value needs a line
number, the rows are read again with Python's `csv` module, which names the file, line and
column of the first bad cell, so both readers give one meaning and one set of messages.

A feature column is read as one of four kinds (`ColumnKind`): numbers (float32, an empty cell
NaN until `dataset.csv.missing` fills or drops it), integers (int64; an empty cell is
`MISSING_INTEGER`, a category of its own), strings (categories, stripped; an empty cell is
`MISSING_TEXT`) or text (free text for TextVectorization, stripped; an empty cell is empty
text; quoted newlines kept). Columns typed in `dataset.csv.columns` take the kind of their
FeatureSpace type (`text` for a text column), the others are numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np

from dlcli.data.common import Arrays, DatasetInfo, Split, resolve_path
from dlcli.errors import DataError, DlcliError
from dlcli.spec.messages import suggest
from dlcli.spec.schema import CsvSource

CHUNK_ROWS = 1024  # rows converted to numbers at a time (Python reader)
SNIFFED_CHARACTERS = 4096  # the start of a file that tells its delimiter
DELIMITERS = ",;\t"
MISSING_TEXT = "(empty)"  # an empty cell of a text column: a category of its own
MISSING_INTEGER = -(2**31)  # an empty cell of an integer column: a category of its own
INTEGER_RANGE = (-(2**31) + 1, 2**31 - 1)  # FeatureSpace's integer inputs are int32

LabelKind = Literal["integer", "number", "class"]
ColumnKind = Literal["number", "integer", "string", "text"]
# said after "`...` is not a number" where the spec types columns: how words are typed
WORDS_HINT = (
    "; a column of words is typed `string_categorical`, or `{text: {...}}` for free text, in "
    "dataset.csv.columns"
)
_INTEGER_TEXT = re.compile(r"^\s*[-+]?\d+\s*$")


def column_kind(feature_type: str) -> ColumnKind:
    """How a column of a FeatureSpace type is read.

    >>> column_kind("string_categorical"), column_kind("integer_hashed"), column_kind("text")
    ('string', 'integer', 'text')
    """
    if feature_type == "text":
        return "text"
    if feature_type.startswith("string"):
        return "string"
    return "integer" if feature_type.startswith("integer") else "number"


@dataclass(frozen=True)
class _Table:
    """One CSV file: its feature columns by kind, its label columns as text (pyarrow arrays)."""

    path: Path
    feature_names: list[str]
    columns: dict[str, np.ndarray]  # feature column -> values
    labels: dict[str, Any]  # label column -> pyarrow string array, stripped
    weights: np.ndarray | None = None
    dropped: int = 0  # rows with empty cells left out (`missing: drop`)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def line(self, index: int) -> int:
        """The line of the file that holds the row `index` (from 0), for messages."""
        return row_line(self.path, index)

    def take(self, keep: np.ndarray) -> _Table:
        """The rows where `keep` is true."""
        import pyarrow as pa

        mask = pa.array(keep)
        return _Table(
            self.path,
            self.feature_names,
            {name: values[keep] for name, values in self.columns.items()},
            {name: texts.filter(mask) for name, texts in self.labels.items()},
            None if self.weights is None else self.weights[keep],
            self.dropped + int((~keep).sum()),
        )


@dataclass(frozen=True)
class Missing:
    """What was done about empty cells of numeric columns: the values that filled them (the
    training means) and how many there were per column and file."""

    policy: Literal["mean", "drop", "error"]
    fill: dict[str, float] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> column -> count
    dropped: dict[str, int] = field(default_factory=dict)  # file -> rows left out

    def note(self) -> str | None:
        """One line for the run's first lines, or None when no cell was empty."""
        if self.policy == "drop" and any(self.dropped.values()):
            rows = ", ".join(f"{count} in {name}" for name, count in self.dropped.items() if count)
            return f"Rows with empty numeric cells left out (dataset.csv.missing: drop): {rows}"
        totals: dict[str, int] = {}
        for counts in self.counts.values():
            for column, count in counts.items():
                totals[column] = totals.get(column, 0) + count
        if self.policy != "mean" or not any(totals.values()):
            return None
        filled = ", ".join(
            f"`{column}` {count} (with {self.fill[column]:.6g})"
            for column, count in totals.items()
            if count
        )
        return (
            f"Empty numeric cells filled with the training mean: {filled}; "
            "`dataset.csv.missing: drop|error` to choose otherwise"
        )


def load_csv(
    source: CsvSource, base_dir: Path, *, fill: dict[str, float] | None = None
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test examples from CSV files (paths relative to `base_dir`).

    The features are the columns that `source.features` lists, else every column of the
    training file but the labels (and weights), found by name in every file; x is float32 of
    shape (rows, features). With `source.inputs` x is a mapping of each model input to its
    columns, and with `source.labels` y maps each model output to its label column. With
    `source.columns` x maps each feature column to its raw values (numbers, integers or text,
    see `ColumnKind`), as the model's FeatureSpace takes them.
    Labels that are all integers stay int64 (class indices, or class codes that
    `dlcli.data.class_codes` turns into class names; `source.label_kind` decides); labels that
    are all numbers become float32 regression targets; any other labels are class names,
    sorted, and y holds their int64 indices. Empty cells of numeric columns are filled with the
    training mean (`fill`: the values a trained model recorded instead), dropped, or refused,
    as `source.missing` says. Blank lines (and rows of empty cells) are skipped, and a UTF-8
    byte order mark is allowed.

    Raises:
        DataError: one line naming the file, and the line and column where they apply: a
            missing or empty file, no data rows, an unknown label or feature column, a row with
            the wrong number of columns, a value that is not a finite number, a validation or
            test label that the training file does not have, or an integer label beyond 64 bits.
    """
    # A mapping of one input or output reads as `features` or `label`: one array, not by name.
    inputs = source.inputs if source.inputs is not None and len(source.inputs) > 1 else None
    outputs = source.labels if source.labels is not None and len(source.labels) > 1 else None
    label = source.label_columns[0]
    columns = list(outputs.values()) if outputs else [label]
    features = source.features
    if source.inputs is not None:
        features = list(dict.fromkeys(c for names in source.inputs.values() for c in names))
    keys = (
        "dataset.csv.labels" if source.labels else "dataset.csv.label",
        "dataset.csv.inputs" if source.inputs else "dataset.csv.features",
    )
    typed = {name: column_kind(kind.class_name) for name, kind in (source.columns or {}).items()}
    train = _read_table(
        resolve_path(source.train, base_dir), columns, features, keys, typed, source.weight
    )
    _sequence_alone(source, train)
    others = [
        None
        if path is None
        else _read_table(resolve_path(path, base_dir), columns, train.feature_names, keys, typed)
        for path in (source.validation, source.test)
    ]
    missing, (filled, *others) = _missing(source.missing_policy, fill, [train, *others])
    assert filled is not None  # the training table is always there
    train = filled
    tables = [table for table in (train, *others) if table is not None]
    kinds = {column: _label_kind(column, tables, source.label_kind) for column in columns}
    classes = {
        column: _class_names(train.labels[column], kind) if kind == "class" else None
        for column, kind in kinds.items()
    }

    def split(table: _Table) -> Split:
        y = {c: _labels(table, c, kinds[c], classes[c], train.path) for c in columns}
        x: Arrays
        if source.columns is not None:
            x = table.columns
        else:
            x = _matrix(table) if inputs is None else _by_input(table, inputs)
        labels = y[label] if outputs is None else {o: y[c] for o, c in outputs.items()}
        return Split(x, labels, table.weights)

    validation, test = (None if table is None else split(table) for table in others)
    info = DatasetInfo(
        source=source.train,
        class_names=classes[label] if outputs is None else None,
        feature_names=train.feature_names if inputs is None else None,
        output_classes=None if outputs is None else {o: classes[c] for o, c in outputs.items()},
        input_features=inputs,
        column_kinds=None
        if source.columns is None
        else {name: typed.get(name, "number") for name in train.feature_names},
        missing=missing,
        integer_labels=frozenset(
            output
            for output, column in (outputs or {"": label}).items()
            if kinds[column] == "integer"
        ),
    )
    return split(train), validation, test, info


def _sequence_alone(source: CsvSource, train: _Table) -> None:
    """Refuse a text column of token sequences beside other feature columns of the header
    (the spec alone shows it where it lists them: `dlcli.spec.columns`)."""
    from dlcli.spec.columns import is_sequence, sequence_alone

    for column, feature in (source.columns or {}).items():
        others = [name for name in train.feature_names if name != column]
        if is_sequence(feature) and others:
            raise DataError(f"{train.path}: {sequence_alone(column, _listing(others))}")


def _matrix(table: _Table) -> np.ndarray:
    """The feature columns (all numbers) as one float32 array of shape (rows, features)."""
    matrix = np.empty((len(table), len(table.feature_names)), dtype=np.float32)
    for index, name in enumerate(table.feature_names):
        matrix[:, index] = table.columns[name]
    return matrix


def _missing(
    policy: Literal["mean", "drop", "error"],
    fill: dict[str, float] | None,
    tables: list[_Table | None],
) -> tuple[Missing, list[_Table | None]]:
    """Empty cells of the numeric feature columns filled, their rows dropped, or refused."""
    train = tables[0]
    assert train is not None
    numeric = [name for name, values in train.columns.items() if values.dtype.kind == "f"]
    result = Missing(policy)
    if policy == "mean" and fill is None:
        fill = {}
        for name in numeric:
            values = train.columns[name]
            if np.isnan(values).all():
                raise DataError(
                    f"{train.path}: the column `{name}` is empty in every row; drop it or "
                    "fill it in"
                )
            fill[name] = float(np.nanmean(values))
    done: list[_Table | None] = []
    for table in tables:
        if table is None:
            done.append(None)
            continue
        empty = {name: np.isnan(table.columns[name]) for name in numeric}
        counts = {name: int(mask.sum()) for name, mask in empty.items()}
        result.counts[table.path.name] = counts
        if not any(counts.values()):
            done.append(table)
            continue
        if policy == "error" or (policy == "drop" and fill is not None):
            index, name = min(
                (int(np.argmax(mask)), name) for name, mask in empty.items() if mask.any()
            )
            raise DataError(
                f"{table.path}, line {table.line(index)}, column `{name}`: the value is empty; "
                + (
                    "fill in or drop missing values (or `dataset.csv.missing: mean`)"
                    if policy == "error"
                    else "the model was trained with `dataset.csv.missing: drop`"
                )
            )
        if policy == "drop":
            keep = ~np.logical_or.reduce(list(empty.values()))
            if not keep.any():
                raise DataError(f"{table.path}: every row has an empty numeric cell; none is left")
            table = table.take(keep)
            result.dropped[table.path.name] = table.dropped
            done.append(table)
            continue
        for name, mask in empty.items():
            if mask.any():
                if fill is None or name not in fill:
                    raise DataError(f"{table.path}: the column `{name}` has empty cells")
                table.columns[name][mask] = fill[name]
        done.append(table)
    if policy == "mean":
        result.fill.update(fill or {})
    return result, done


def _by_input(table: _Table, inputs: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The feature columns of a table as one array per model input, by the input's name."""
    return {
        name: np.stack([table.columns[column] for column in columns], axis=1).astype(np.float32)
        for name, columns in inputs.items()
    }


def _label_kind(
    column: str, tables: list[_Table], written: Literal["indices", "names", "numbers"] | None
) -> LabelKind:
    """What a label column holds in all the files: integers, numbers, or else class names;
    `written` (`dataset.csv.label_kind`) says it instead of the texts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pa.chunked_array([table.labels[column] for table in tables])
    integers = _cast(texts, pa.int64())
    numbers = integers if integers is not None else _cast(texts, pa.float64())
    if written == "names":
        return "class"
    if written == "numbers":
        if numbers is None:
            _first_bad(tables, column, lambda t: _cast(t, pa.float64()) is not None, "number")
        return "number"
    if integers is None and pc.all(pc.match_substring_regex(texts, _INTEGER_TEXT.pattern)).as_py():
        for table in tables:  # integers all, but one beyond 64 bits
            for index, text in enumerate(table.labels[column].to_pylist()):
                if not -(2**63) <= int(text) < 2**63:
                    raise DataError(
                        f"{table.path}, line {table.line(index)}: the label `{text}` does not "
                        "fit a class index (a 64-bit integer); integer labels are class "
                        "indices 0, 1, 2, ..."
                    )
    if written == "indices":
        if integers is None:
            _first_bad(tables, column, lambda t: _cast(t, pa.int64()) is not None, "class index")
        return "integer"
    if integers is not None:
        return "integer"
    return "number" if numbers is not None else "class"


def _first_bad(tables: list[_Table], column: str, fits: Any, what: str) -> None:
    """Raise a DataError at the first label that `fits` refuses (`dataset.csv.label_kind`)."""
    import pyarrow as pa

    for table in tables:
        for index, text in enumerate(table.labels[column].to_pylist()):
            if not fits(pa.array([text])):
                raise DataError(
                    f"{table.path}, line {table.line(index)}: the label `{text}` is not a "
                    f"{what} (dataset.csv.label_kind)"
                )


def _cast(texts: Any, to: Any) -> Any:
    """The texts as numbers of the pyarrow type `to`, or None where one does not read as such."""
    import pyarrow as pa

    try:
        return texts.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _class_names(texts: Any, kind: LabelKind) -> list[str]:
    """The sorted class names of a label column (integer codes in numeric order)."""
    import pyarrow.compute as pc

    names = pc.unique(texts).to_pylist()
    if all(_INTEGER_TEXT.match(name) for name in names):
        return [str(code) for code in sorted({int(name) for name in names})]
    return sorted(names)


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


def file_delimiter(path: Path) -> str:
    """The delimiter of a CSV file, as `read_rows` sniffs it."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
        return _delimiter(file.read(SNIFFED_CHARACTERS))


def row_line(path: Path, index: int) -> int:
    """The line of a CSV file that ends the data row `index` (from 0, after the header)."""
    for position, (line, _) in enumerate(read_rows(path)):
        if position == index + 1:
            return line
    raise DataError(f"{path}: has no data row {index}")  # not reached for a row read


def _read_table(
    path: Path,
    label_columns: list[str],
    feature_names: list[str] | None,
    keys: tuple[str, str],
    typed: dict[str, ColumnKind],
    weight: str | None = None,
) -> _Table:
    """Read and check one CSV file; `feature_names` None means every column but the labels
    (and the `weight` column, read as non-negative weights when given). `typed` gives the kind
    of each column the spec types (the others are numbers); `keys` are the spec keys that name
    the label and the feature columns, for the messages."""
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    first = next(read_rows(path), None)
    if first is None:
        raise DataError(
            f"{path}: the file is empty; expected a header row naming the columns, "
            "then one row per example"
        )
    header = [name.strip() for name in first[1]]
    feature_names = _feature_names(header, label_columns, feature_names, path, weight, keys[1])
    for label in label_columns:
        _column(header, label, "label", path, keys[0])
    for name in feature_names:
        _column(header, name, "feature", path, keys[1])
    for name in typed:
        if name not in header:
            hint = suggest(name, header)
            raise DataError(
                f"{path}: no column `{name}`{hint}; the columns are {_listing(header)} "
                "(see dataset.csv.columns)"
            )
    if weight is not None:
        _column(header, weight, "weight", path, "dataset.csv.weight")
    kinds: dict[str, ColumnKind] = {name: typed.get(name, "number") for name in feature_names}
    if weight is not None:
        kinds[weight] = "number"
    read = None
    if first[0] == 1 and len(set(header)) == len(header):
        read = _read_arrow(path, header, kinds, label_columns)
    if read is None:
        read = _read_python(path, header, kinds, label_columns, hint=WORDS_HINT if typed else "")
    columns, labels = read
    if not labels[label_columns[0]]:
        raise DataError(f"{path}: no data rows after the header")
    table = _Table(path, feature_names, columns, labels)
    for label in label_columns:
        empty = np.flatnonzero(np.asarray(labels[label].to_numpy(zero_copy_only=False)) == "")
        if empty.size:
            raise DataError(
                f"{path}, line {table.line(int(empty[0]))}: the label `{label}` is empty"
            )
    if weight is None:
        return table
    weights = columns.pop(weight)
    bad = np.flatnonzero(np.isnan(weights) | (weights < 0))
    if bad.size:
        where = f"{path}, line {table.line(int(bad[0]))}, column `{weight}`"
        if np.isnan(weights[bad[0]]):
            raise DataError(f"{where}: the value is empty; fill in or drop missing values")
        raise DataError(f"{where}: a weight must be 0 or more")
    return _Table(path, feature_names, columns, labels, weights)


def _read_arrow(
    path: Path, header: list[str], kinds: dict[str, ColumnKind], label_columns: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The columns through pyarrow's CSV reader, or None where the Python reader must read
    (a cell pyarrow refuses, a row of empty cells, a value that is not finite): it then
    names the line and column, or reads what pyarrow would not."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as arrow_csv

    arrow_type = {
        "number": pa.float32(),
        "integer": pa.int64(),
        "string": pa.string(),
        "text": pa.string(),
    }
    types = {name: arrow_type[kind] for name, kind in kinds.items()}
    types |= {label: pa.string() for label in label_columns}
    try:
        table = arrow_csv.read_csv(
            path,
            read_options=arrow_csv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=arrow_csv.ParseOptions(
                delimiter=file_delimiter(path), newlines_in_values=True
            ),
            convert_options=arrow_csv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError):
        return None
    texts = {
        name: pc.utf8_trim_whitespace(table[name]) for name in types if types[name] == pa.string()
    }
    blank = None
    for name in types:
        empty = pc.equal(texts[name], "") if name in texts else pc.is_null(table[name])
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is not None and pc.any(blank).as_py():
        return None  # a row of empty cells, which the Python reader skips
    columns: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        if kind in ("string", "text"):
            values = texts[name].to_numpy().astype(object)
            if kind == "string":
                values[values == ""] = MISSING_TEXT
        elif kind == "integer":
            column = table[name]
            low, high = pc.min_max(column).values()
            if (low.as_py() or 0) < INTEGER_RANGE[0] or (high.as_py() or 0) > INTEGER_RANGE[1]:
                return None
            values = column.fill_null(MISSING_INTEGER).to_numpy()
        else:
            column = table[name]
            finite = pc.is_finite(column)
            if not pc.all(pc.fill_null(finite, True)).as_py():
                return None  # NaN or infinity written in a cell: refused with its line
            values = column.to_numpy().astype(np.float32, copy=False)
        columns[name] = values
    labels = {label: texts[label].combine_chunks() for label in label_columns}
    return columns, labels


def _read_python(
    path: Path,
    header: list[str],
    kinds: dict[str, ColumnKind],
    label_columns: list[str],
    data: bytes | None = None,
    *,
    hint: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The columns through Python's `csv` module, a chunk of rows at a time; the first bad
    cell raises a DataError that names its file, line and column (`hint` said after a cell
    that is not a number). With `data`, the file's content is those bytes (see `read_rows`)."""
    import pyarrow as pa

    positions = {name: header.index(name) for name in [*kinds, *label_columns]}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in kinds}
    labels: dict[str, list[str]] = {label: [] for label in label_columns}
    lines: list[int] = []
    chunk: list[list[str]] = []

    def convert() -> None:
        for name, kind in kinds.items():
            cells = [row[positions[name]] for row in chunk]
            chunks[name].append(_cells(cells, kind, lines[-len(chunk) :], name, path, hint))

    rows = read_rows(path, data=data)
    next(rows)  # the header
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: {len(row)} columns, but the header has {len(header)}"
            )
        for label in label_columns:
            labels[label].append(row[positions[label]].strip())
        lines.append(line)
        chunk.append(row)
        if len(chunk) == CHUNK_ROWS:
            convert()
            chunk = []
    if chunk:
        convert()
    columns = {
        name: np.concatenate(parts) if parts else np.empty(0, np.float32)
        for name, parts in chunks.items()
    }
    return columns, {label: pa.array(texts, pa.string()) for label, texts in labels.items()}


def _cells(
    cells: list[str], kind: ColumnKind, lines: list[int], name: str, path: Path, hint: str = ""
) -> np.ndarray:
    """One column of a chunk of rows as its kind's values, or a DataError at the first bad cell
    (`hint` said after a cell that is not a number)."""
    if kind == "string":
        return np.array([cell.strip() or MISSING_TEXT for cell in cells], dtype=object)
    if kind == "text":
        texts = np.empty(len(cells), dtype=object)  # not np.array: it would make a str array
        texts[:] = [cell.strip() for cell in cells]
        return texts
    empty = [not cell.strip() for cell in cells]
    filled = ["0" if blank else cell for cell, blank in zip(cells, empty, strict=True)]
    if kind == "integer":
        integers = np.empty(len(cells), dtype=np.int64)
        for index, (text, line) in enumerate(zip(filled, lines, strict=True)):
            where = f"{path}, line {line}, column `{name}`"
            if not _INTEGER_TEXT.match(text):
                raise DataError(f"{where}: `{text}` is not an integer")
            number = int(text)
            if not INTEGER_RANGE[0] <= number <= INTEGER_RANGE[1]:
                raise DataError(f"{where}: `{text}` is beyond the 32-bit integers")
            integers[index] = MISSING_INTEGER if empty[index] else number
        return integers
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        values: np.ndarray | None = None
        with suppress(ValueError):  # a cell that is not a number: found and named below
            values = np.array(filled, dtype=np.float32)
        if values is None or not np.isfinite(values).all():
            for text, line in zip(filled, lines, strict=True):
                where = f"{path}, line {line}, column `{name}`"
                try:
                    number = np.float32(text)
                except ValueError:
                    raise DataError(f"{where}: `{text}` is not a number{hint}") from None
                if not np.isfinite(number):
                    raise DataError(f"{where}: `{text}` is not a finite float32 number")
    assert values is not None
    values[np.array(empty, dtype=bool)] = np.nan  # empty: filled, dropped or refused later
    return values


def read_columns(
    path: Path,
    kinds: dict[str, ColumnKind],
    *,
    policy: Literal["mean", "drop", "error", "keep"],
    fill: dict[str, float],
    error: type[DlcliError] = DataError,
    data: bytes | None = None,
) -> dict[str, np.ndarray]:
    """The feature columns of a CSV file as a trained model's FeatureSpace takes them.

    The columns named in `kinds` are found by name in the header (others are ignored, a label
    column too); empty numeric cells are filled with the training means recorded in the model
    (`fill`), refused when the model was trained with `missing: drop` or `error`, or kept as
    NaN for the caller to judge (`keep`, as time windows do: dlcli.data.time_windows). With
    `data`, the file's content is those bytes (an upload) and `path` only names it.

    Raises:
        `error` (DataError by default): a missing column or a bad cell, naming file and line.

    Example:
        read_columns(Path("rows.csv"), {"island": "string", "mass": "number"},
                     policy="mean", fill={"mass": 4200.0})
    """
    try:
        first = next(read_rows(path, data=data), None)
        if first is None:
            raise DataError(f"{path}: the file is empty; expected a header row naming the columns")
        header = [name.strip() for name in first[1]]
        absent = [name for name in kinds if name not in header]
        if absent:
            hint = suggest(absent[0], header)
            raise DataError(
                f"{path}: no column `{absent[0]}`{hint}; the model takes the columns "
                f"{_listing(list(kinds))}"
            )
        read = None
        if data is None and first[0] == 1 and len(set(header)) == len(header):
            read = _read_arrow(path, header, kinds, [])
        columns = (read or _read_python(path, header, kinds, [], data))[0]
        if not columns or not len(next(iter(columns.values()))):
            raise DataError(f"{path}: no data rows after the header")
        table = _Table(path, list(kinds), columns, {})
        if policy != "keep":  # `drop` with values given refuses an empty cell: every row counts
            _missing(policy, fill if policy == "mean" else {}, [table])
    except DataError as problem:
        raise error(str(problem)) from None
    return columns


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
    """Whether a first row names columns: it holds a cell that is neither a number nor empty
    (a row of numbers may have an empty cell; a header of names does not).

    >>> is_header(["a", "b"]), is_header(["1.5", "-2"]), is_header(["1.5", " "])
    (True, False, False)
    """
    return not all(is_number(cell) or not cell.strip() for cell in row)


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
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = table.labels[column]
    if kind == "class":
        assert class_names is not None
        if all(_INTEGER_TEXT.match(name) for name in class_names):  # codes as written: 01 is 1
            texts = texts.cast(pa.int64()).cast(pa.string())
        indices = pc.index_in(texts, value_set=pa.array(class_names, pa.string()))
        unknown = np.flatnonzero(indices.is_null().to_numpy(zero_copy_only=False))
        if unknown.size:
            text = texts[int(unknown[0])].as_py()
            raise DataError(
                f"{table.path}, line {table.line(int(unknown[0]))}: the label `{text}` does not "
                f"occur in the training file {train_path}, whose labels are "
                f"{_listing(class_names)}"
            )
        return indices.to_numpy().astype(np.int64)
    if kind == "integer":
        return texts.cast(pa.int64()).to_numpy().astype(np.int64, copy=False)
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        targets = texts.cast(pa.float64()).to_numpy().astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(targets))
    if bad.size:
        line, text = table.line(int(bad[0])), texts[int(bad[0])].as_py()
        raise DataError(
            f"{table.path}, line {line}: the label `{text}` is not a finite float32 number"
        )
    return targets
