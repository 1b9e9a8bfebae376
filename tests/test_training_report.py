"""What `dlcli train` tells about a run: early stops, epoch numbers, progress, curves, and
which run folders it leaves behind."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from .helpers import invoke, tiny_spec, write_tiny_data

SPEC = tiny_spec(dataset={"validation_split": 0.25}, fit={"epochs": 20, "batch_size": 16})


def train(*args: str) -> Any:
    return invoke(["train", *args])


def test_early_stopping_is_reported_with_the_weights_it_kept(tmp_path: Path) -> None:
    """Early stopping is reported: the epoch it stopped at and the weights it kept."""
    write_tiny_data(tmp_path, 64, classes=3, spec=SPEC)
    stop = "{monitor: loss, patience: 1, min_delta: 100, restore_best_weights: true}"
    stop = f"[{{EarlyStopping: {stop}}}]"
    result = train("spec.yaml", "--set", f"fit.callbacks={stop}")
    assert result.exit_code == 0, result.output
    note = "Stopped at epoch 2 of 20: loss did not improve for 1 epoch; weights of epoch 1 restored"
    assert result.stdout.splitlines()[0] == note
    metrics = json.loads(Path("runs/tiny-1/metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["stopped_early"] == note


def test_a_run_of_every_epoch_says_nothing_about_stopping(tmp_path: Path) -> None:
    write_tiny_data(tmp_path, 64, classes=3, spec=SPEC)
    result = train("spec.yaml", "--set", "fit.epochs=2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("On the training data (no test split): ")
    assert "stopped_early" not in json.loads(Path("runs/tiny-1/metrics.json").read_text())


def test_history_numbers_epochs_from_one_like_the_table(tmp_path: Path) -> None:
    """history.csv numbers epochs 1, 2, 3, as the table and the curves do."""
    write_tiny_data(tmp_path, 64, classes=3, spec=SPEC)
    result = train("spec.yaml", "--set", "fit.epochs=3")
    assert result.exit_code == 0, result.output
    with open("runs/tiny-1/history.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]


def test_curves_have_whole_epoch_ticks() -> None:
    """The curves of a 3-epoch run have ticks at whole epochs only."""
    from dlcli.utils import plots

    figure = plots.curves_figure({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6]})
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(tick == int(tick) for tick in ticks), ticks


def test_the_terminal_bar_ends_at_the_last_step() -> None:
    """The epoch's last frame shows every step (469/469) even when the last update arrived
    between two redraws (rich redraws 10 times a second)."""
    from dlcli.cli.render import TrainView
    from dlcli.data.common import DatasetInfo, Split, Splits

    output = io.StringIO()
    view = TrainView(Console(file=output, force_terminal=True, width=120))
    empty = Split(np.zeros((1, 1)), np.zeros(1))
    view.start("CPU", Splits(empty, empty, info=DatasetInfo(source="tiny")), Path("runs/t-1"))
    view.start_epoch(1, 1, 469)
    view.advance(400, {"loss": 0.5})
    view.end_epoch(1, {"loss": 0.25})
    view.stop()
    assert "469/469" in output.getvalue()


def test_the_live_display_shows_the_run_the_epoch_and_the_last_epochs_scores() -> None:
    """On a terminal: a bar for the whole run with the time left, the epoch's bar, and the last
    finished epoch's training and validation scores."""
    from dlcli.cli.render import TrainView
    from dlcli.data.common import DatasetInfo, Split, Splits

    output = io.StringIO()
    view = TrainView(Console(file=output, force_terminal=True, width=150, color_system=None))
    empty = Split(np.zeros((1, 1)), np.zeros(1))
    view.start("CPU", Splits(empty, empty, info=DatasetInfo(source="tiny")), Path("runs/t-1"))
    view.start_epoch(1, 3, 10)
    view.end_epoch(1, {"loss": 0.5, "val_loss": 0.75})
    view.start_epoch(2, 3, 10)
    view.advance(5, {"loss": 0.4})
    view.live.refresh()
    frame = output.getvalue()
    view.stop()
    assert re.search(r"run .*1/3 epochs .*left", frame), frame
    assert re.search(r"epoch 2/3 .*5/10 .*loss 0\.4000", frame), frame
    assert "last epoch 1: loss 0.5000  val_loss 0.7500" in frame


def test_piped_output_has_a_line_for_every_epoch_and_the_table_marks_the_best() -> None:
    """Piped: one line per epoch with its validation scores; the table keeps the first, the
    best and the last epochs, marks the rows left out with …, and names the best under it."""
    from dlcli.cli.render import TrainView
    from dlcli.train.callbacks import Monitor

    output = io.StringIO()
    view = TrainView(Console(file=output, width=100))
    view.monitor = Monitor("val_loss", "min")
    for epoch in range(1, 41):
        view.start_epoch(epoch, 40, 1)
        view.end_epoch(epoch, {"loss": 1 / epoch, "val_loss": abs(epoch - 14) + 0.5})
    view.stop()
    text = output.getvalue()
    assert [int(n) for n in re.findall(r"^epoch (\d+): ", text, re.MULTILINE)] == list(range(1, 41))
    assert "epoch 14: loss 0.0714  val_loss 0.5000 (" in text
    rows = re.findall(r"^│\s*(\S+(?: \*)?) │", text, re.MULTILINE)
    assert rows[:2] == ["1", "2"] and rows[-1] == "40"
    assert "14 *" in rows and "…" in rows and len(rows) <= 22
    assert "Best val_loss 0.5000 at epoch 14 (*)" in text


def test_a_keras_version_outside_the_tested_ones_trains_with_kerass_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    from dlcli.distribute import keras_fixes
    from dlcli.train import loop
    from dlcli.train import pipeline as training

    write_tiny_data(tmp_path, 64, classes=3, spec=SPEC)
    fused: list[bool] = []
    real = loop.training_data
    monkeypatch.setattr(
        training, "training_data", lambda *a, **k: fused.append(k["fused"]) or real(*a, **k)
    )
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    result = train("spec.yaml", "--set", "fit.epochs=1")
    assert result.exit_code == 0, result.output
    assert fused == [False]
    assert (
        "Keras 3.16.0 is outside the versions dlcli was tested with (3.15.x): training with "
        "Keras's own loop\n"
    ) in result.stderr
    assert [keras_fixes.fused_loop_tested(v) for v in ("3.15.1", "3.15.9", "3.16.0", "3.1.5")] == [
        True,
        True,
        False,
        False,
    ]


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path: Path) -> None:
    """A `dlcli train` that fails before training leaves no numbered run folder."""
    write_tiny_data(tmp_path, 64, classes=3, spec=SPEC)
    result = train("spec.yaml", "--set", "model.input=[5]")
    assert result.exit_code == 4, result.output
    assert "train data has examples of shape (4,) but the model input is (5,)" in result.stderr
    assert not Path("runs").exists()  # made by this run, so removed with it
    again = train("spec.yaml", "--set", "fit.epochs=1")
    assert again.exit_code == 0 and Path("runs/tiny-1").is_dir(), "the number is not used up"


def test_an_interrupt_before_the_first_backup_leaves_no_folder(tmp_path: Path) -> None:
    """A real SIGINT to a real process in its first epoch: nothing to resume, so nothing kept."""
    fit = {"epochs": 20, "batch_size": 4, "shuffle": False}
    four = tiny_spec(dataset={"validation_split": 0.25}, fit=fit)
    write_tiny_data(tmp_path, 40_000, classes=3, spec=four)
    log = tmp_path / "stderr.log"
    command = [
        sys.executable,
        "-m",
        "dlcli",
        "train",
        "spec.yaml",
        "--set",
        "compile.steps_per_execution=1",
    ]
    env = {**os.environ, "COLUMNS": "300"}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 120
        while "Run directory: runs/tiny-1" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)  # into the first epoch (10,000 steps at steps_per_execution 1)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert code == 130, text
    assert re.search(
        r"^Error: SIGINT in epoch 1, batch \d+: stopped before the first epoch ended, so there "
        r"is nothing to resume and runs/tiny-1 was removed$",
        text,
        re.MULTILINE,
    ), text
    assert not (tmp_path / "runs" / "tiny-1").exists()
