"""Time windows over ordered CSV rows (`dataset.csv.windows`, book ch. 10).

In-process: a window and its target against a hand-computed example, chronological splits
that no window straddles, statistics from the training rows only, the last window of a file.
Then train -> evaluate -> predict through the CLI in a subprocess with an empty HOME and cache
on a tiny generated series, and the mistakes, one line each.
"""

from __future__ import annotations

import doctest
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dlcli.data.load import load_dataset
from dlcli.data.time_windows import cut_windows, last_window, window_rows
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
    x, y = cut_windows(rows, 100 + rows[:, 0], windows)
    assert window_rows(windows) == 9
    assert x[:, :, 0].tolist() == [[0, 2, 4], [1, 3, 5], [2, 4, 6], [3, 5, 7]]
    assert y.tolist() == [108, 109, 110, 111]
    strided = windows.model_copy(update={"sequence_stride": 2})
    x, y = cut_windows(rows, 100 + rows[:, 0], strided)
    assert x[:, :, 0].tolist() == [[0, 2, 4], [2, 4, 6]] and y.tolist() == [108, 110]
    now = windows.model_copy(update={"delay": 0})  # delay 0: the window's own last row
    x, y = cut_windows(rows, 100 + rows[:, 0], now)
    assert x[0, :, 0].tolist() == [0, 2, 4] and y[0] == 104 and len(y) == 8


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
        assert split.x[0, :, 0].tolist() == [first, first + 2, first + 4]
        assert split.y[0] == 100 + first + 8 and split.y[-1] == 100 + last
        assert len(split) == last - first + 1 - 8
    assert splits.test.x[:, 0, 0].tolist() == [40, 41] and splits.test.y.tolist() == [148, 149]
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
    keras_windows, _ = cut_windows(rows, None, windows)
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
    test figures, byte for byte (Dropout included)."""
    _series(tmp_path / "series.csv", 60)
    spec = SERIES_SPEC.replace(
        "    - Dense: {units: 1}", "    - Dropout: {rate: 0.25}\n    - Dense: {units: 1}"
    )
    (tmp_path / "series.yaml").write_text(spec.replace("epochs: 3", "epochs: 5"))
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
