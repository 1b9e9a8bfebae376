"""Time windows over ordered CSV rows (`dataset.csv.windows`, book ch. 10).

In-process: a window and its target against a hand-computed example; every split's windows,
as held (`Windows`) and as the tf.data pipelines of training and scoring gather them, against
the windows `keras.utils.timeseries_dataset_from_array` cuts and materialises (the reference:
what dlcli held in memory before); training and scoring on the gathered windows bit for bit as
on that reference; chronological splits that no window straddles, statistics from the training
rows only, the last window of a file. Then train -> evaluate -> predict through the CLI in a
subprocess with an empty HOME and cache on a tiny generated series, and the mistakes, one line
each.
"""

from __future__ import annotations

import doctest
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.data.common import Split, Splits, digest
from dlcli.data.load import load_dataset
from dlcli.data.time_windows import Windows, cut_windows, last_window, read_series, window_rows
from dlcli.errors import ConfigError, DataError, InputError
from dlcli.spec.load import spec_from_text
from dlcli.spec.schema import DatasetSpec, WindowsSpec

from .helpers import dlcli_command, home_env, run_cli

WHERE = "series.yaml"


def _series(path: Path, rows: int, *, first: int = 0) -> Path:
    """A CSV of `rows` ordered rows: `step` = the row's index (from `first`), `level` = 100 +
    the index, and a `noise` column that no window takes."""
    lines = ["step,noise,level"]
    lines += [f"{index},{(index * 7) % 3},{100 + index}" for index in range(first, first + rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _dataset(csv: dict[str, object] | None = None, **changes: object) -> DatasetSpec:
    """`dataset` of series.csv: windows of `step` (3 rows, every 2nd) forecast `level` 4 rows
    on; `csv` changes keys of `dataset.csv`, `changes` those of `dataset`."""
    windows = {"sequence_length": 3, "sampling_rate": 2, "target": "level", "delay": 4}
    written = {"train": "series.csv", "features": ["step"], "windows": windows, **(csv or {})}
    return DatasetSpec.model_validate({"csv": written, **changes})


def test_a_window_and_its_target_align_as_written() -> None:
    """sequence_length 3, sampling_rate 2, delay 4: the window starting at row s holds rows s,
    s+2, s+4, and its target is the row 4 after the last, s+8; a window and its target take
    (3-1)*2+1+4 = 9 rows, so 12 rows hold 4 windows, or 2 with sequence_stride 2."""
    rows = np.arange(12, dtype=np.float32)[:, np.newaxis]
    windows = WindowsSpec(sequence_length=3, sampling_rate=2, target="t", delay=4)
    x, y = _held(cut_windows(rows, 100 + rows[:, 0], windows))
    assert window_rows(windows) == 9
    assert x[:, :, 0].tolist() == [[0, 2, 4], [1, 3, 5], [2, 4, 6], [3, 5, 7]]
    assert y.tolist() == [108, 109, 110, 111]
    strided = windows.model_copy(update={"sequence_stride": 2})
    x, y = _held(cut_windows(rows, 100 + rows[:, 0], strided))
    assert x[:, :, 0].tolist() == [[0, 2, 4], [2, 4, 6]] and y.tolist() == [108, 110]
    now = windows.model_copy(update={"delay": 0})  # delay 0: the window's own last row
    x, y = _held(cut_windows(rows, 100 + rows[:, 0], now))
    assert x[0, :, 0].tolist() == [0, 2, 4] and y[0] == 104 and len(y) == 8


def _held(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """A split's windows gathered in memory (`Windows.decode`), and its targets."""
    return split.x.decode(np.arange(len(split))), split.y


def _reference(
    values: np.ndarray, target: np.ndarray | None, windows: WindowsSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The windows and targets Keras cuts, materialised: dlcli's code before windows were
    gathered a batch at a time, kept here as what they must equal."""
    import keras

    shift = window_rows(windows) - 1
    dataset = keras.utils.timeseries_dataset_from_array(
        values,
        None if target is None else target[shift:],
        sequence_length=windows.sequence_length,
        sampling_rate=windows.sampling_rate,
        sequence_stride=windows.sequence_stride,
        shuffle=False,
        batch_size=4096,
    )
    xs, ys = [], []
    for batch in dataset.as_numpy_iterator():
        inputs, outputs = batch if target is not None else (batch, None)
        xs.append(inputs)
        if outputs is not None:
            ys.append(outputs)
    x = np.concatenate(xs).astype(np.float32, copy=False)
    y = np.concatenate(ys).astype(np.float32, copy=False) if ys else np.empty(0, np.float32)
    return x, y


def _noisy_series(path: Path, rows: int, seed: int) -> Path:
    """A CSV of `rows` rows of two seeded normal features `a`, `b` and their sum `t`."""
    values = np.random.default_rng(seed).normal(size=(rows, 2)).round(3)
    path.write_text("\n".join(["a,b,t", *(f"{a},{b},{a + b:.3f}" for a, b in values)]) + "\n")
    return path


# (sampling_rate, sequence_stride, delay): the book's kind, strided starts, the window's own
# last row as its target, strided with delay 0
CUTS = [(2, 1, 4), (1, 3, 2), (3, 1, 0), (2, 2, 0)]


def _splits_and_references(
    tmp_path: Path, rate: int, stride: int, delay: int
) -> tuple[Splits, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Windows of 4 rows of `a`, `b`, `t` forecasting `t`: a 97-row training file (its last 24
    rows the validation rows) and a 31-row test file. The splits `load_dataset` gives, and each
    split's reference windows and targets (`_reference`)."""
    train, test = (
        _noisy_series(tmp_path / "series.csv", 97, 5),
        _noisy_series(tmp_path / "later.csv", 31, 6),
    )
    windows = {"sequence_length": 4, "sampling_rate": rate, "sequence_stride": stride}
    windows |= {"target": "t", "delay": delay}
    dataset = {"csv": {"train": "series.csv", "test": "later.csv", "windows": windows}}
    splits = load_dataset(
        DatasetSpec.model_validate({**dataset, "validation_split": 0.25}), tmp_path, seed=0
    )
    spec = WindowsSpec.model_validate(windows)
    rows, target = read_series(train, ["a", "b", "t"], "t")
    test_rows, test_target = read_series(test, ["a", "b", "t"], "t")
    return splits, {
        "train": _reference(rows[:73], target[:73], spec),
        "validation": _reference(rows[73:], target[73:], spec),
        "test": _reference(test_rows, test_target, spec),
    }


@pytest.mark.parametrize(("rate", "stride", "delay"), CUTS)
def test_the_windows_held_and_gathered_are_the_ones_keras_cuts(
    tmp_path: Path, rate: int, stride: int, delay: int
) -> None:
    """Every split's windows and targets, gathered in memory, by the tf.data pipeline that
    scores and validates (`batches`) and by those that train (dlcli's `executions` and Keras's
    own loop, as on several devices: their first epoch in order), equal the reference Keras
    materialises, in order; the digest is the reference arrays' own, as dlcli recorded it when
    it held them."""
    from dlcli.train.loop import executions, training_data

    splits, references = _splits_and_references(tmp_path, rate, stride, delay)
    held = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    for name, split in held.items():
        assert split is not None and isinstance(split.x, Windows)
        x, y = references[name]
        assert len(x) > 3 and split.x.shape == x.shape and split.x.dtype == x.dtype
        assert np.array_equal(_held(split)[0], x), name
        assert split.y.dtype == y.dtype and np.array_equal(split.y, y), name
        batches = list(split.x.batches(3, split.y).as_numpy_iterator())
        assert np.array_equal(np.concatenate([batch[0] for batch in batches]), x), name
        assert np.array_equal(np.concatenate([batch[1] for batch in batches]), y), name
        decoded = split.x.decoded_map([0, 2])
        trained = executions((split.x.keys, split.y), 2, False, 2, decoded=decoded)
        first_epoch = []
        for stacked, _, rest, _ in trained.take(-(-len(x) // 4)).as_numpy_iterator():
            first_epoch += [*stacked.reshape(-1, *x.shape[1:]), *rest]
        assert np.array_equal(np.stack(first_epoch), x), name
        keras_loop = training_data(None, split.x, split.y, 2, False, replicas=1, fused=False)["x"]
        batched = list(keras_loop.take(-(-len(x) // 2)).as_numpy_iterator())
        assert np.array_equal(np.concatenate([batch[0] for batch in batched]), x), name
        assert np.array_equal(np.concatenate([batch[1] for batch in batched]), y), name
    assert splits.info.digest == digest(*references["train"], *references["test"])


def test_the_training_windows_are_not_held_in_memory(tmp_path: Path) -> None:
    """2,000 rows of 3 columns, windows of 100 rows: the training split holds its rows and one
    start per window (about 31 KB), not the windows' 2.3 MB."""
    _noisy_series(tmp_path / "series.csv", 2000, 1)
    windows = {"sequence_length": 100, "target": "t"}
    splits = load_dataset(
        DatasetSpec.model_validate({"csv": {"train": "series.csv", "windows": windows}}),
        tmp_path,
        seed=0,
    )
    train = splits.train.x
    assert isinstance(train, Windows) and not isinstance(train, np.ndarray)
    assert train.shape == (1900, 100, 3) and train.nbytes == 1900 * 100 * 3 * 4
    held = [value for value in vars(train).values() if isinstance(value, np.ndarray)]
    assert sum(array.nbytes for array in held) == 2000 * 3 * 4 + 1900 * 8 + 100 * 8
    assert max(array.ndim for array in held) == 2


def _window_model(jit_compile: bool) -> Any:
    """A small regression of windows of 4 rows of 3 features, with Dropout: a seed's state."""
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((4, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="mse",
        metrics=["mae"],
        jit_compile=jit_compile,
        steps_per_execution=2,
    )
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_on_gathered_windows_is_training_on_the_reference(
    tmp_path: Path, jit_compile: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shuffled per epoch, batches of 8: Keras's `fit` over dlcli's executions of windows
    gathered in the pipeline, and several epochs to one compiled program gathering them inside
    it (validation too), each log and weight bit for bit as `fit` over the reference arrays;
    then the test split scored (`score`: in the pipeline, and a few batches eagerly) to the
    reference's figures."""
    import keras

    from dlcli.model import scoring
    from dlcli.model.build import create_training_variables
    from dlcli.train.loop import fit_epochs_at_once, training_data

    splits, references = _splits_and_references(tmp_path, 1, 1, 2)
    assert splits.validation is not None
    (x, y), validation = references["train"], references["validation"]

    def fitted(train_x: Any, **validation_data: Any) -> tuple[Any, dict[str, list[float]]]:
        model = _window_model(jit_compile)
        create_training_variables(model, x, y)
        data = training_data(model, train_x, y, 8, True, replicas=1)
        history = model.fit(**data, epochs=4, **validation_data, verbose=0).history
        return model, history

    reference, history = fitted(x, validation_data=validation, validation_batch_size=8)
    gathered = splits.validation.x.batches(8, validation[1])  # as training validates
    model, streamed = fitted(splits.train.x, validation_data=gathered)
    at_once = _window_model(jit_compile)
    create_training_variables(at_once, x, y)
    recorded = keras.callbacks.History()
    fit_epochs_at_once(
        at_once,
        splits.train.x,
        y,
        8,
        True,
        epochs=4,
        first_epoch=0,
        per_execution=3,
        callbacks=[recorded],
        executed=lambda: None,
        validation=(splits.validation.x, validation[1]),
    )
    assert streamed == history and recorded.history == history
    for trained in (model, at_once):
        for ours, theirs in zip(trained.variables, reference.variables, strict=True):
            assert np.array_equal(ours.numpy(), theirs.numpy()), ours.path
    test_x, test_y = references["test"]
    for batch_size in (2, 4):  # 13 batches: through the pipeline; 7: eagerly
        monkeypatch.setattr(scoring, "BATCH_BYTES", batch_size)  # `least_batch` decides
        scored = scoring.score(reference, splits.test.x, test_y, batch_size)
        expected = scoring.score(reference, test_x, test_y, batch_size)
        assert scored[0] == expected[0] and np.array_equal(scored[1], expected[1])


def test_docstring_examples() -> None:
    import dlcli.data.time_windows

    assert doctest.testmod(dlcli.data.time_windows).failed == 0


def test_splits_are_chronological_and_no_window_straddles_a_boundary(tmp_path: Path) -> None:
    """50 rows, validation_split 0.2, test_split 0.2: rows 0-29 train, 30-39 validation (the
    rows just before the test rows), 40-49 test; each split's windows use its own rows alone,
    in order, and the statistics are the training rows' (steps 0..29: mean 14.5)."""
    _series(tmp_path / "series.csv", 50)
    splits = load_dataset(
        _dataset(validation_split=0.2, test_split=0.2), tmp_path, seed=7, stream=True
    )
    assert splits.validation is not None
    for split, first, last in ((splits.train, 0, 29), (splits.validation, 30, 39)):
        assert _held(split)[0][0, :, 0].tolist() == [first, first + 2, first + 4]
        assert split.y[0] == 100 + first + 8 and split.y[-1] == 100 + last
        assert len(split) == last - first + 1 - 8
    test_x, test_y = _held(splits.test)
    assert test_x[:, 0, 0].tolist() == [40, 41] and test_y.tolist() == [148, 149]
    series = splits.info.windows
    assert series.mean == [14.5] and series.variance == pytest.approx([np.arange(30).var()])
    assert series.rows == {
        "train": (str(tmp_path / "series.csv"), 1, 30),
        "validation": (str(tmp_path / "series.csv"), 31, 10),
        "test": (str(tmp_path / "series.csv"), 41, 10),
    }
    assert splits.info.sizes == {"train": 22, "test": 2, "validation": 2}
    # read again (as --resume and evaluate do), the same windows: nothing but the file decides
    again = load_dataset(_dataset(validation_split=0.2, test_split=0.2), tmp_path, seed=8)
    assert again.info.digest == splits.info.digest


def test_the_summary_takes_one_window_as_input(tmp_path: Path) -> None:
    """`dlcli summary` without `model.input`: the window's shape from the spec and header."""
    from dlcli.model.build import summarize

    _series(tmp_path / "series.csv", 20)
    (tmp_path / "series.yaml").write_text(SERIES_SPEC.replace("    features: [step, level]\n", ""))
    lines = summarize(tmp_path / "series.yaml")
    assert lines[0] == (
        "Input: windows of 4 rows of 3 features, normalised inside the model by the training "
        "rows' mean and variance (a Normalization layer in front)"
    )
    assert any("(None, 12)" in line for line in lines)  # Flatten: 4 rows x 3 columns


def test_the_last_window_is_the_one_keras_cuts_last(tmp_path: Path) -> None:
    """predict's window, taken without Keras, is the last one Keras cuts (a file of 20 rows,
    sampling_rate 2: rows 15, 17, 19)."""
    path = _series(tmp_path / "series.csv", 20)
    windows = WindowsSpec(sequence_length=3, sampling_rate=2, target="level", delay=4)
    last = last_window(path, ["step", "level"], windows)
    rows = np.stack([np.arange(20), 100 + np.arange(20)], axis=1).astype(np.float32)
    keras_windows, _ = _reference(rows, None, windows)
    assert last.shape == (1, 3, 2)
    assert last[0].tolist() == keras_windows[-1].tolist() == [[15, 115], [17, 117], [19, 119]]


SERIES_SPEC = """\
name: series
seed: 3
dataset:
  csv:
    train: series.csv
    features: [step, level]
    windows: {sequence_length: 4, sampling_rate: 2, target: level, delay: 2}
  validation_split: 0.2
  test_split: 0.2
model:
  layers:
    - Flatten
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 1}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
  loss: mse
  metrics: [mae]
fit:
  epochs: 3
  batch_size: 8
"""


def test_train_evaluate_and_forecast_from_the_last_window(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """Train on a 60-row series, then evaluate the saved model (raw windows in: the training
    rows' Normalization is inside it) to the training-time test figure, evaluate --data
    another file, and forecast from a file's last window: the rows before it change nothing,
    and one row fewer than a window is refused."""
    _series(tmp_path / "series.csv", 60)
    (tmp_path / "series.yaml").write_text(SERIES_SPEC)
    trained = run_cli(["train", "series.yaml"], user_env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    output = trained.stdout + trained.stderr
    assert (
        "Windows: 4 rows of `step`, `level` (every 2 rows); target `level` 2 row(s) after a "
        "window's last row; train rows 1-36 of series.csv, validation rows 37-48 of "
        "series.csv, test rows 49-60 of series.csv; inputs normalised inside model.keras by "
        "the training rows' mean and variance"
    ) in output
    assert "Data: series.csv (train 28, test 4, validation 4)" in output
    assert "Traceback" not in output
    run = tmp_path / "runs" / "series-1"
    recorded = json.loads((run / "metrics.json").read_text())["test"]["mae"]
    evaluated = run_cli(["evaluate", str(run / "model.keras"), "--json"], user_env, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["examples"] == 4 and result["metrics"]["mae"] == pytest.approx(recorded)
    _series(tmp_path / "other.csv", 30, first=200)
    other = run_cli(
        ["evaluate", str(run / "model.keras"), "--data", "other.csv", "--json"], user_env, tmp_path
    )
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["examples"] == 30 - 9 + 1  # (4-1)*2+1+2 rows a window

    _series(tmp_path / "tail.csv", 7, first=53)  # the last 7 rows: (4-1)*2+1
    _series(tmp_path / "short.csv", 6, first=54)
    forecasts = []
    for name in ("series.csv", "tail.csv"):
        predicted = run_cli(
            ["predict", name, "--model", run / "model.keras", "--json"], None, tmp_path
        )
        assert predicted.returncode == 0, predicted.stderr
        assert (
            "Forecast of `level` 2 row(s) after the last row of each .csv file, from its last 7 "
            "rows (a window)"
        ) in predicted.stderr
        (prediction,) = json.loads(predicted.stdout)["predictions"]
        forecasts.append(prediction["value"])
    assert forecasts[0] == forecasts[1]
    short = run_cli(["predict", "short.csv", "--model", run / "model.keras"], None, tmp_path)
    assert short.returncode == InputError.exit_code
    assert short.stderr.strip().splitlines()[-1] == (
        "Error: short.csv: 6 rows, but one window takes 7: (sequence_length 4 - 1) * "
        "sampling_rate 2 + 1"
    )


def _spec(old: str, new: str) -> str:
    assert old in SERIES_SPEC
    return SERIES_SPEC.replace(old, new, 1)


SPEC_MISTAKES = [
    (
        _spec("    features:", "    label: level\n    features:"),
        "`dataset.csv`: `windows` forecasts `windows.target` from windows of the `features` "
        "columns; leave out `label` (series.yaml, line 4)",
    ),
    (
        _spec("    features:", "    columns: {step: float_normalized}\n    features:"),
        "`dataset.csv`: `windows` forecasts `windows.target` from windows of the `features` "
        "columns; leave out `columns` (series.yaml, line 4)",
    ),
    (
        _spec("    features:", "    label_kind: numbers\n    features:"),
        "`dataset.csv`: `windows` forecasts `windows.target` from windows of the `features` "
        "columns; leave out `label_kind` (series.yaml, line 4)",
    ),
    (
        _spec("    features: [step, level]", "    inputs: {a: [step]}"),
        "`dataset.csv`: `windows` forecasts `windows.target` from windows of the `features` "
        "columns; leave out `inputs` (series.yaml, line 4)",
    ),
    (
        _spec("    features:", "    missing: mean\n    features:"),
        "`dataset.csv`: an empty cell of a time series is refused (its file, line and column "
        "are named): a gap has no one right filling, so fill it in the file; leave out "
        "`missing` (series.yaml, line 4)",
    ),
    (
        _spec("  csv:\n    train: series.csv", "  npz:\n    path: data.npz"),
        "`dataset`: `windows` cuts the ordered rows of a CSV table into time windows "
        "(`dataset.csv.windows`); the `npz` source has no columns (series.yaml, line 3)",
    ),
    (
        _spec("  validation_split: 0.2", "  windows: {sequence_length: 2, target: level}"),
        "`dataset`: `windows` belongs under `csv`: `dataset.csv.windows` (series.yaml, line 3)",
    ),
    (
        _spec("sequence_length: 4", "sequence_length: 0"),
        "`dataset.csv.windows.sequence_length` must be greater than 0. Received: 0 "
        "(series.yaml, line 7)",
    ),
    (
        _spec("delay: 2}", "delai: 2}"),
        "`dataset.csv.windows.delai`: unknown key `delai` (did you mean `delay`?); valid keys: "
        "sequence_length, sampling_rate, sequence_stride, target, delay (series.yaml, line 7)",
    ),
    (
        _spec("model:\n  layers:", "model:\n  inputs: [{name: a, shape: [4, 2]}]\n  layers:"),
        "`model.inputs`: with `dataset.csv.windows` the model takes the windows as its one "
        "input: write a layer stack (`layers:`, `input:` may be left out) (series.yaml, line 11)",
    ),
]


@pytest.mark.parametrize(("text", "message"), SPEC_MISTAKES)
def test_spec_mistakes_are_one_line_before_tensorflow(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        spec_from_text(text, WHERE)
    assert str(raised.value) == message


def test_a_spec_mistake_is_exit_3_without_tensorflow(tmp_path: Path) -> None:
    (tmp_path / "series.yaml").write_text(SPEC_MISTAKES[0][0])
    checked = run_cli(["validate", "series.yaml"], None, tmp_path, importtime=True)
    assert checked.returncode == ConfigError.exit_code
    assert checked.stderr.strip().splitlines()[-1] == f"Error: {SPEC_MISTAKES[0][1]}"
    heavy = re.findall(r"^import time:.*\|\s*(tensorflow|keras)(\.|$)", checked.stderr, re.M)
    assert heavy == []


def _data_mistake(tmp_path: Path, **changes: object) -> str:
    with pytest.raises(DataError) as raised:
        load_dataset(_dataset(**changes), tmp_path, seed=0)
    return str(raised.value)


def test_data_mistakes_name_file_line_and_column(tmp_path: Path) -> None:
    path = _series(tmp_path / "series.csv", 20)
    assert _data_mistake(tmp_path, validation_split=0.3, test_split=0.3) == (
        f"{path}: the train rows (data rows 1-8, 8 rows) are fewer than one window needs: "
        "(sequence_length 3 - 1) * sampling_rate 2 + 1 + delay 4 = 9 rows (dataset.csv.windows)"
    )
    assert _data_mistake(tmp_path, test_split=0.1) == (
        f"{path}: the test rows (data rows 19-20, 2 rows) are fewer than one window needs: "
        "(sequence_length 3 - 1) * sampling_rate 2 + 1 + delay 4 = 9 rows (dataset.csv.windows)"
    )
    windows = {"sequence_length": 3, "target": "levle"}
    assert _data_mistake(tmp_path, csv={"windows": windows}) == (
        f"{path}: no column `levle` (did you mean `level`?); the columns are `step`, `noise`, "
        "`level` (see dataset.csv.windows.target)"
    )
    assert _data_mistake(tmp_path, csv={"features": ["stpe"]}) == (
        f"{path}: no column `stpe` (did you mean `step`?); the columns are `step`, `noise`, "
        "`level` (see dataset.csv.features)"
    )
    with pytest.raises(InputError) as raised:
        last_window(
            path,
            ["step", "levels"],
            WindowsSpec(sequence_length=2, target="levels"),
            error=InputError,
        )
    assert str(raised.value) == (
        f"{path}: no column `levels` (did you mean `level`?); the columns are `step`, `noise`, "
        "`level` (the model takes windows of `step`, `levels`)"
    )
    text = path.read_text().splitlines()
    text[5] = "4,1,up"  # a class name as a target: targets are numbers (or class indices)
    path.write_text("\n".join(text) + "\n")
    assert _data_mistake(tmp_path) == f"{path}, line 6, column `level`: `up` is not a number"
    text[5] = "4,1,"  # data row 5, line 6: the target cell empty
    path.write_text("\n".join(text) + "\n")
    assert _data_mistake(tmp_path) == (
        f"{path}, line 6, column `level`: the value is empty; a time series needs a value in "
        "every row (fill the gap in the file, e.g. by interpolation)"
    )


def test_a_data_mistake_is_exit_4_through_the_cli(tmp_path: Path) -> None:
    _series(tmp_path / "series.csv", 12)
    (tmp_path / "series.yaml").write_text(SERIES_SPEC)
    ran = run_cli(["train", "series.yaml"], None, tmp_path)
    assert ran.returncode == DataError.exit_code
    assert ran.stderr.strip().splitlines()[-1] == (
        "Error: series.csv: the train rows (data rows 1-8, 8 rows) are fewer than one window "
        "needs: (sequence_length 4 - 1) * sampling_rate 2 + 1 + delay 2 = 9 rows "
        "(dataset.csv.windows)"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_killed_as_an_epoch_is_backed_up_then_resumed_is_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """Windows add no state of their own: cut again from the file on --resume, shuffled per
    epoch from the seed as any arrays. A run killed (SIGKILL, by strace) as it publishes the
    backup of epoch 3 resumes after epoch 2 and ends with the uninterrupted run's history and
    test figures, byte for byte (Dropout included). A callback (as configs/sunspots.yaml has)
    makes each epoch a `fit` epoch of its own, backed up after it; without one these few
    epochs run as one compiled program, backed up once."""
    _series(tmp_path / "series.csv", 60)
    spec = SERIES_SPEC.replace(
        "    - Dense: {units: 1}", "    - Dropout: {rate: 0.25}\n    - Dense: {units: 1}"
    ).replace("epochs: 3", "epochs: 5")
    callback = "  callbacks:\n    - EarlyStopping: {monitor: val_mae, patience: 10}\n"
    (tmp_path / "series.yaml").write_text(spec + callback)
    assert run_cli(["train", "series.yaml"], None, tmp_path).returncode == 0
    publish = tmp_path / "runs" / "series-2" / "backup" / ".partial"  # renamed to epoch-N
    killed = subprocess.run(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2"]
        + ["-e", "inject=rename:signal=KILL:when=3", f"-P{publish}"]
        + [*dlcli_command(), "train", "series.yaml"],
        cwd=tmp_path,
        env=home_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    resumed = run_cli(["train", "--resume", "runs/series-2"], None, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch 2 of 5, from its backup" in resumed.stderr
    runs = [tmp_path / "runs" / name for name in ("series-1", "series-2")]
    histories = [(run / "history.csv").read_bytes() for run in runs]
    assert histories[0] == histories[1] and histories[0].count(b"\n") == 6
    tests = [json.loads((run / "metrics.json").read_text())["test"] for run in runs]
    assert tests[0] == tests[1]
