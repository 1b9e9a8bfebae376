"""Time windows over the ordered rows of a CSV table (`dataset.csv.windows`, book ch. 10).

The rows of a file are one series, in file order. With L = `sequence_length`, r =
`sampling_rate` and d = `delay`, the window that starts at row s of a split holds the rows

    s, s + r, s + 2r, ..., s + (L - 1) r

of the `features` columns (every column when `features` is not given), and its target is the
`target` column at row s + (L - 1) r + d: `delay` rows after the window's last row. Windows
start `sequence_stride` rows apart, from the split's first row. One window and its target take
(L - 1) r + 1 + d rows; a forecast (`dlcli predict`) takes the last (L - 1) r + 1 rows of a file
and forecasts d rows beyond its end. These are the windows and targets, in the same order,
that `keras.utils.timeseries_dataset_from_array` cuts when handed the target column shifted by
(L - 1) r + d rows (it pairs the window starting at s with `targets[s]`).

Splits are chronological: without validation or test files, the test rows are the last
`round(rows * test_split)` rows of the training file, the validation rows the
`round(rows * validation_split)` rows just before them (both fractions of all the rows), and
the training rows those before. Windows are cut within each split, so none straddles a
boundary, and the splits are never shuffled across. The mean and variance of each feature over
the training rows (`Series`) are what the model's Normalization layer holds
(dlcli.model.window_normalization), so model.keras takes raw windows.

An empty cell is refused, naming its file, line and column: a gap in a series has no one
right filling (the mean would be a step that never happened), so the file says what it is.
Targets are numbers (regression); a classifier's target cells must be its class indices.

Windows are never all in memory. A split's x is `Windows`: its rows (float32, as read) and the
first row of each window, its key (an `ExampleStream`); a batch's windows are gathered from
the rows inside the tf.data pipeline (`tf.gather` of s + r * range(L), no Python per window).
Its targets are an array, one per window. Reading needs no Keras, so training reads the
files once, on its reader thread, while TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.data.common import DatasetInfo, Loaded, Split, resolve_path
from dlcli.data.csv_tables import read_columns, read_rows
from dlcli.data.example_stream import ExampleStream
from dlcli.errors import DataError, DlcliError
from dlcli.spec.messages import suggest

if TYPE_CHECKING:
    from dlcli.spec.schema import CsvSource, DatasetSpec, WindowsSpec


@dataclass(frozen=True)
class Series:
    """What the windows of a dataset were cut from: the feature columns, the statistics of
    the training rows, and where each split's rows are."""

    windows: WindowsSpec
    features: list[str]
    mean: list[float]
    variance: list[float]
    rows: dict[str, tuple[str, int, int]]  # split -> (file, first data row from 1, rows)

    def note(self) -> str:
        """One line for the run's first lines: the windows, the splits, the normalisation."""
        windows = self.windows
        rate = windows.sampling_rate
        every = "consecutive rows" if rate == 1 else f"every {rate} rows"
        parts = ", ".join(
            f"{split} rows {first}-{first + count - 1} of {Path(file).name}"
            for split, (file, first, count) in self.rows.items()
        )
        return (
            f"Windows: {windows.sequence_length} rows of {_listing(self.features)} "
            f"({every}); target `{windows.target}` "
            f"{windows.delay} row(s) after a window's last row; {parts}; inputs normalised "
            "inside model.keras by the training rows' mean and variance"
        )


def window_rows(windows: WindowsSpec, *, with_target: bool = True) -> int:
    """The rows one window takes: (sequence_length - 1) * sampling_rate + 1, and `delay` more
    for its target.

    >>> from dlcli.spec.schema import WindowsSpec
    >>> window_rows(WindowsSpec(sequence_length=3, sampling_rate=2, target="t", delay=4))
    9
    >>> window_rows(WindowsSpec(sequence_length=3, sampling_rate=2, target="t"), with_target=False)
    5
    """
    span = (windows.sequence_length - 1) * windows.sampling_rate + 1
    return span + windows.delay if with_target else span


def forecast_note(windows: WindowsSpec) -> str:
    """What `dlcli predict` forecasts from a CSV file of a series.

    >>> from dlcli.spec.schema import WindowsSpec
    >>> forecast_note(WindowsSpec(sequence_length=3, sampling_rate=2, target="t", delay=4))
    'Forecast of `t` 4 row(s) after the last row of each .csv file, from its last 5 rows (a window)'
    """
    rows = window_rows(windows, with_target=False)
    return (
        f"Forecast of `{windows.target}` {windows.delay} row(s) after the last row of each .csv "
        f"file, from its last {rows} rows (a window)"
    )


def window_shape(source: CsvSource, base_dir: Path) -> tuple[int, int]:
    """(sequence_length, features) of one window: the features listed, else every column of
    the training file's header (read without the rows)."""
    assert source.windows is not None
    features = source.features or _header(resolve_path(source.train, base_dir), DataError)
    return source.windows.sequence_length, len(features)


class Windows(ExampleStream):
    """The windows of a split, gathered from its rows when a batch of them is needed.

    It stands where an array of shape (windows, sequence_length, features) float32 would:
    indexing picks windows, `decode` gathers them in memory with numpy, and `decoded` gathers
    them in TensorFlow from their keys, the rows the windows start at.

    Args:
        rows: the split's rows, (rows, features) float32.
        starts: the row each window starts at, in order.
        sequence_length: the rows of a window.
        sampling_rate: the rows from one of a window's rows to the next.

    Example:
        >>> windows = Windows(np.arange(8, dtype=np.float32)[:, None], np.array([0, 1, 3]), 3, 2)
        >>> windows.shape, windows.decode(np.array([2]))[..., 0].tolist()
        ((3, 3, 1), [[3.0, 5.0, 7.0]])
    """

    dtype = np.dtype(np.float32)
    ndim = 3
    in_graph = True

    def __init__(
        self, rows: np.ndarray, starts: np.ndarray, sequence_length: int, sampling_rate: int
    ) -> None:
        self.rows = rows
        self.starts = starts.astype(np.int64, copy=False)
        self.sequence_length = sequence_length
        self.sampling_rate = sampling_rate
        self.offsets = np.arange(sequence_length, dtype=np.int64) * sampling_rate

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def keys(self) -> np.ndarray:
        return self.starts

    def __getitem__(self, index: Any) -> Windows:
        return Windows(self.rows, self.starts[index], self.sequence_length, self.sampling_rate)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), self.sequence_length, int(self.rows.shape[1]))

    def decode(self, positions: np.ndarray) -> np.ndarray:
        """The windows at `positions`, shape (*positions' shape, sequence_length, features)."""
        return self.rows[self.starts[positions][..., np.newaxis] + self.offsets]

    def decoded(self) -> Callable[[Any], Any]:
        """Starts into their windows: one `tf.gather` of the rows (held once, as a tensor in
        host memory, where tf.data runs)."""
        import tensorflow as tf

        with tf.device("/cpu:0"):
            rows, offsets = tf.constant(self.rows), tf.constant(self.offsets)

        def decoded(starts: Any) -> Any:
            return tf.gather(rows, tf.expand_dims(starts, -1) + offsets)

        return decoded


def cut_windows(values: np.ndarray, target: np.ndarray, windows: WindowsSpec) -> Split:
    """The windows of rows `values` (rows, features) float32 and their targets from `target`
    (rows,): x is `Windows`, y float32 (windows,).

    Example:
        >>> from dlcli.spec.schema import WindowsSpec
        >>> rows = np.arange(12, dtype=np.float32)
        >>> spec = WindowsSpec(sequence_length=3, sampling_rate=2, target="t", delay=4)
        >>> split = cut_windows(rows[:, np.newaxis], 100 + rows, spec)
        >>> split.x.keys.tolist(), split.y.tolist()
        ([0, 1, 2, 3], [108.0, 109.0, 110.0, 111.0])
    """
    shift = window_rows(windows) - 1
    starts = np.arange(0, max(len(values) - shift, 0), windows.sequence_stride, dtype=np.int64)
    x = Windows(values, starts, windows.sequence_length, windows.sampling_rate)
    return Split(x, target[starts + shift].astype(np.float32))


def load_windows(dataset: DatasetSpec, base_dir: Path) -> Loaded:
    """Train, validation and test windows of a time series (see the module's docstring).

    x is `Windows` (standing for float32 of shape (windows, sequence_length, features)), y
    float32 of shape (windows,).

    Raises:
        DataError: one line: a missing column (with the nearest name), an empty or bad cell
            (file, line, column), or a split with fewer rows than one window needs.
    """
    source = dataset.csv
    assert source is not None and source.windows is not None
    windows = source.windows
    features = source.features or _header(resolve_path(source.train, base_dir), DataError)
    parts = _split_rows(dataset, base_dir, features)
    needed = window_rows(windows)
    for split, part in parts.items():
        if len(part.values) < needed:
            raise DataError(
                f"{part.path}: the {split} rows ({part.describe()}) are fewer than one window "
                f"needs: (sequence_length {windows.sequence_length} - 1) * sampling_rate "
                f"{windows.sampling_rate} + 1 + delay {windows.delay} = {needed} rows "
                "(dataset.csv.windows)"
            )
    training_rows = parts["train"].values.astype(np.float64)
    series = Series(
        windows=windows,
        features=list(features),
        mean=[float(value) for value in training_rows.mean(axis=0)],
        variance=[float(value) for value in training_rows.var(axis=0)],
        rows={
            split: (str(part.path), part.first + 1, len(part.values))
            for split, part in parts.items()
        },
    )
    made = {split: cut_windows(part.values, part.target, windows) for split, part in parts.items()}
    info = DatasetInfo(source=source.train, feature_names=list(features), windows=series)
    return made["train"], made.get("validation"), made.get("test"), info


@dataclass(frozen=True)
class _Rows:
    """The rows of one split: the feature and target columns from data row `first` (from 0)
    of the file at `path`."""

    path: Path
    first: int
    values: np.ndarray
    target: np.ndarray

    def describe(self) -> str:
        """`data rows 31-40, 10 rows`: where the rows are, counted from 1 after the header."""
        count = len(self.values)
        where = f"data rows {self.first + 1}-{self.first + count}" if count else "none"
        return f"{where}, {count} rows"


def _split_rows(dataset: DatasetSpec, base_dir: Path, features: list[str]) -> dict[str, _Rows]:
    """The rows of each split, in time order: train, then validation and test, each the
    training file's next rows by its fraction of all of them, or a file of its own."""
    source = dataset.csv
    assert source is not None and source.windows is not None
    target = source.windows.target
    train_path = resolve_path(source.train, base_dir)
    values, targets = read_series(train_path, features, target)
    rows = len(targets)
    held: dict[str, int] = {}
    for split, fraction, file in (
        ("validation", dataset.validation_split, source.validation),
        ("test", dataset.test_split, source.test),
    ):
        if file is None and fraction:
            held[split] = round(rows * fraction)
            if not held[split]:
                raise DataError(
                    f"{train_path}: a {split}_split of {fraction} holds no row of its {rows} rows"
                )
    parts: dict[str, _Rows] = {}
    start = 0
    for split, count in {"train": max(rows - sum(held.values()), 0), **held}.items():
        rows_of_split = slice(start, start + count)
        parts[split] = _Rows(train_path, start, values[rows_of_split], targets[rows_of_split])
        start += count
    for split in ("validation", "test"):
        file = getattr(source, split)
        if file is not None:
            path = resolve_path(file, base_dir)
            parts[split] = _Rows(path, 0, *read_series(path, features, target))
    return parts


def last_window(
    path: Path,
    features: list[str],
    windows: WindowsSpec,
    *,
    error: type[DlcliError] = DataError,
    data: bytes | None = None,
) -> np.ndarray:
    """The last window of a CSV file, shape (1, sequence_length, features): what a forecast
    `delay` rows beyond the file's last row is made from (`dlcli predict`).

    Raises:
        `error`: a missing column, an empty or bad cell, or fewer rows than one window takes.
    """
    values, _ = read_series(path, features, None, error=error, data=data)
    needed = window_rows(windows, with_target=False)
    if len(values) < needed:
        raise error(
            f"{path}: {len(values)} rows, but one window takes {needed}: (sequence_length "
            f"{windows.sequence_length} - 1) * sampling_rate {windows.sampling_rate} + 1"
        )
    # the last window of these rows, taken without TensorFlow: predict through onnxruntime
    # loads none
    return values[len(values) - needed :: windows.sampling_rate][np.newaxis]


def read_series(
    path: Path,
    features: list[str],
    target: str | None,
    *,
    error: type[DlcliError] = DataError,
    data: bytes | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The feature columns (rows, features) and the target column (rows,) of a CSV file, in
    file order, float32; with no `target` (a forecast), an empty array in its place.

    Raises:
        `error`: a missing column (with the nearest name), an empty or bad cell.
    """
    header = _header(path, error, data)
    for name, key in [
        *((name, "dataset.csv.features") for name in features),
        *([(target, "dataset.csv.windows.target")] if target is not None else []),
    ]:
        if name not in header:
            # training names the spec's key; a forecast (no target) the columns the model takes
            wanted = f"see {key}" if target else f"the model takes windows of {_listing(features)}"
            raise error(
                f"{path}: no column `{name}`{suggest(name, header)}; the columns are "
                f"{_listing(header)} ({wanted})"
            )
    names = list(dict.fromkeys([*features, *([target] if target else [])]))
    columns = read_columns(
        path, dict.fromkeys(names, "number"), policy="keep", fill={}, error=error, data=data
    )
    empty = [
        (int(np.argmax(np.isnan(columns[name]))), name)
        for name in names
        if np.isnan(columns[name]).any()
    ]
    if empty:
        row, name = min(empty)
        raise error(
            f"{path}, line {_line(path, row, data)}, column `{name}`: the value is empty; a time "
            "series needs a value in every row (fill the gap in the file, e.g. by interpolation)"
        )
    values = np.stack([columns[name] for name in features], axis=1).astype(np.float32)
    targets = columns[target] if target is not None else np.empty(0, np.float32)
    return values, targets


def _header(path: Path, error: type[DlcliError], data: bytes | None = None) -> list[str]:
    """The column names of a CSV file's first row."""
    first = next(read_rows(path, error, data), None)
    if first is None:
        raise error(f"{path}: the file is empty; expected a header row naming the columns")
    return [name.strip() for name in first[1]]


def _line(path: Path, row: int, data: bytes | None) -> int:
    """The line of the file that ends data row `row` (from 0, after the header)."""
    for index, (line, _) in enumerate(read_rows(path, data=data)):
        if index == row + 1:
            return line
    return 0  # not reached for a row that was read


def _listing(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
