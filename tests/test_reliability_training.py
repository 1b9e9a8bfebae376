"""Interrupted, failing and simultaneous training runs: nothing is lost, every stop is explained.

The signal tests start two real `dlcli train` processes at once on the same spec (which also
shows that simultaneous runs get their own directories), stop one with SIGINT and one with
SIGTERM after two epochs, and then resume in-process. Everything else trains in-process.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.errors import OutputError
from dlcli.model import artifact

from .helpers import FINISHED_RUN_FILES, invoke, model_info, tiny_spec, write_tiny_data

EPOCHS = 6
TINY_SPEC = tiny_spec(
    model={
        "layers": [
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    compile={"optimizer": "adam", "steps_per_execution": 1},
    fit={"epochs": EPOCHS},
)
# ExponentialDecay with a rate above 1: the learning rate is 0.01 in epoch 1 and 1e4 in epoch 2.
DIVERGING_SPEC = """\
name: diverge
seed: 0
dataset:
  npz: regression.npz
model:
  input: [4]
  layers:
    - Dense: {units: 1}
compile:
  optimizer: {SGD: {learning_rate: {ExponentialDecay: {initial_learning_rate: 0.01,
    decay_steps: 8, decay_rate: 1000000.0, staircase: true}}}}
  loss: mse
  steps_per_execution: 1
fit:
  epochs: 5
  batch_size: 8
"""
DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def train(*args: str | Path) -> Any:
    return invoke(["train", *map(str, args)])


def write_classes(folder: Path) -> None:
    """Three learnable classes in 400 rows, 50 batches an epoch, and TINY_SPEC."""
    write_tiny_data(folder, 400, classes=3, spec=TINY_SPEC)


def write_regression_data(folder: Path) -> None:
    """64 rows of a linear function, 8 batches an epoch, and DIVERGING_SPEC."""
    weights = np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")
    write_tiny_data(
        folder, 64, name="regression.npz", label=lambda x: x @ weights, spec=DIVERGING_SPEC
    )


def history_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "history.csv").open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def backup_epoch(run_dir: Path) -> int:
    """The epoch of the run's backup generation (there is one, and nothing else)."""
    (generation,) = (run_dir / "backup").iterdir()
    assert json.loads((generation / "state.json").read_text())["epoch"] == int(generation.name[6:])
    return int(generation.name.removeprefix("epoch-"))


# ---------------------------------------------------------------------------------------------
# SIGINT and SIGTERM: two real processes started at the same time on the same spec


@dataclass(frozen=True)
class Stopped:
    exit_code: int
    stderr: str
    run_dir: Path
    history: bytes  # history.csv right after the stop, before anything resumed the run
    backup_epoch: int
    files: set[str]  # the paths in the run directory right after the stop


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Stopped]:
    """{"SIGINT": ..., "SIGTERM": ...}: each process stopped once 2 epochs were in history.csv."""
    folder = tmp_path_factory.mktemp("interrupted")
    write_classes(folder)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "500"}  # rich wraps no path
    processes: dict[signal.Signals, tuple[subprocess.Popen, Path]] = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        log = folder / f"{number.name}.log"
        with log.open("w") as stderr:
            command = [sys.executable, "-m", "dlcli", "train", "spec.yaml"]
            process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        processes[number] = (process, log)
    waiting, deadline = dict(processes), time.monotonic() + 240
    try:
        while waiting:
            assert time.monotonic() < deadline, "no process logged 2 epochs in 240 s"
            for number, (process, log) in list(waiting.items()):
                found = re.search(r"^Run directory: (.+)$", log.read_text(), re.MULTILINE)
                assert process.poll() is None, f"{number.name} run ended early:\n{log.read_text()}"
                history = folder / found[1] / "history.csv" if found else None
                if history and history.is_file() and history.read_text().count("\n") >= 3:
                    process.send_signal(number)
                    del waiting[number]
            time.sleep(0.02)
        codes = {number: process.wait(timeout=120) for number, (process, _) in processes.items()}
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
    results = {}
    for number, (_, log) in processes.items():
        text = log.read_text()
        run_dir = folder / re.search(r"^Run directory: (.+)$", text, re.MULTILINE)[1]
        assert list((run_dir / "backup").glob("epoch-*")), text
        results[number.name] = Stopped(
            codes[number],
            text,
            run_dir,
            (run_dir / "history.csv").read_bytes(),
            backup_epoch(run_dir),
            set(snapshot(run_dir)),
        )
    return results


@pytest.mark.parametrize(("name", "exit_code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_stops_at_a_batch_boundary_and_prints_the_resume_command(
    stopped: dict[str, Stopped], name: str, exit_code: int
) -> None:
    run = stopped[name]
    assert run.exit_code == exit_code, run.stderr
    assert "Traceback" not in run.stderr
    last_line = run.stderr.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"Error: {name} in epoch (\d+), batch (\d+): stopped; the backup of epoch (\d+) is in "
        rf"{re.escape(str(run.run_dir / 'backup'))}\. Resume with: dlcli train --resume "
        rf"runs/{re.escape(run.run_dir.name)}",
        last_line,
    )
    assert found, last_line
    epoch, batch, backed_up = map(int, found.groups())
    assert backed_up == epoch - 1 == run.backup_epoch >= 2 and 1 <= batch <= 50
    # nothing lost: every completed epoch is in the history and the backup, nothing else is
    assert run.history.decode().count("\n") == 1 + backed_up
    generation = f"backup/epoch-{backed_up}"
    assert {f"{generation}/weights.weights.h5", f"{generation}/state.json"} == {
        path for path in run.files if path.startswith("backup/")
    }
    assert not {"model.keras", "metrics.json"} & run.files


def test_simultaneous_runs_get_their_own_directories(stopped: dict[str, Stopped]) -> None:
    first, second = stopped["SIGINT"].run_dir, stopped["SIGTERM"].run_dir
    assert first.parent == second.parent
    assert sorted(p.name for p in first.parent.iterdir()) == ["tiny-1", "tiny-2"]
    for run in stopped.values():
        assert {path.split("/")[0] for path in run.files} == {
            "spec.yaml",
            "run.json",
            "history.csv",
            "backup",
        }
        assert json.loads((run.run_dir / "run.json").read_text())["spec_file"] == str(
            first.parent.parent / "spec.yaml"
        )


def _claim_run_dir(output_dir: str, barrier: Any, names: Any) -> None:
    from dlcli.runs.record import new_run_dir

    barrier.wait()
    names.put(new_run_dir(Path(output_dir), "tiny").name)


def test_run_directories_claimed_at_the_same_instant_are_distinct(tmp_path: Path) -> None:
    earlier = tmp_path / "runs" / "tiny-3"
    earlier.mkdir(parents=True)
    (earlier / "model.keras").write_bytes(b"an earlier run")
    context = multiprocessing.get_context("spawn")  # this process has TensorFlow's threads
    count = 3
    barrier, names = context.Barrier(count), context.Queue()
    processes = [
        context.Process(target=_claim_run_dir, args=(str(tmp_path / "runs"), barrier, names))
        for _ in range(count)
    ]
    for process in processes:
        process.start()
    claimed = sorted(names.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert claimed == [f"tiny-{number}" for number in range(4, 4 + count)]
    assert all(not any((tmp_path / "runs" / name).iterdir()) for name in claimed)
    assert (earlier / "model.keras").read_bytes() == b"an earlier run"


# ---------------------------------------------------------------------------------------------
# --resume


@pytest.fixture(scope="module")
def resumed(stopped: dict[str, Stopped]) -> tuple[Any, Path, Any]:
    """The SIGINT run resumed with the exact command it printed, then resumed once more."""
    run = stopped["SIGINT"]
    command = shlex.split(run.stderr.strip().splitlines()[-1].split("Resume with: ")[1])
    assert command[:2] == ["dlcli", "train"]
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(run.run_dir.parent.parent)
    try:
        result = invoke(command[1:])
        again = invoke(command[1:])
    finally:
        monkeypatch.undo()
    return result, run.run_dir, again


def test_resume_continues_from_the_last_completed_epoch(
    stopped: dict[str, Stopped], resumed: tuple[Any, Path, Any]
) -> None:
    result, run_dir, _ = resumed
    assert result.exit_code == 0, result.output
    restored = stopped["SIGINT"].backup_epoch
    assert f"Resuming after epoch {restored} of {EPOCHS}, from its backup\n" in result.stderr
    first_resumed = restored + 1
    history = (run_dir / "history.csv").read_bytes()
    assert history.startswith(stopped["SIGINT"].history)
    assert history_epochs(run_dir) == list(range(1, EPOCHS + 1))
    # the weights came back too: the loss goes on falling (from scratch it would jump back up)
    with (run_dir / "history.csv").open(newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert losses[first_resumed - 1] < losses[first_resumed - 2] < losses[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS
    loaded = artifact.load(run_dir / "model.keras")
    assert loaded.metadata.training.epochs == EPOCHS
    assert loaded.metadata.spec.fit.epochs == EPOCHS


def test_a_finished_run_is_not_resumed(resumed: tuple[Any, Path, Any]) -> None:
    _, run_dir, again = resumed
    assert again.exit_code == 2  # the command line asks for what cannot be done
    assert again.stderr == (
        f"Error: --resume runs/{run_dir.name}: this run finished (model.keras exists); "
        "nothing to resume (to train it on, add --set fit.epochs=N with more epochs)\n"
    )


def copy_run(stopped: dict[str, Stopped], tmp_path: Path) -> Path:
    """A copy of the SIGTERM run (never resumed itself) as runs/tiny-1 in the test's folder."""
    return Path(shutil.copytree(stopped["SIGTERM"].run_dir, tmp_path / "runs" / "tiny-1"))


def test_resume_refuses_a_changed_spec_and_restart_starts_over(
    stopped: dict[str, Stopped], tmp_path: Path
) -> None:
    run_dir = copy_run(stopped, tmp_path)
    changed = tmp_path / "spec.yaml"
    changed.write_text(TINY_SPEC.replace("batch_size: 8", "batch_size: 16"))
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "spec_file": str(changed)}))
    before = snapshot(run_dir)
    refused = train("--resume", "runs/tiny-1")
    assert refused.exit_code == 3
    assert refused.stderr == (
        f"Error: --resume runs/tiny-1: {changed} changed since the run was interrupted "
        "(fit.batch_size: 8 -> 16); undo the change to resume, or add --restart to start the "
        "run over\n"
    )
    assert snapshot(run_dir) == before
    restarted = train("--resume", "runs/tiny-1", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert history_epochs(run_dir) == list(range(1, EPOCHS + 1))
    assert "batch_size: 16\n" in (run_dir / "spec.yaml").read_text()
    assert "Resuming after epoch" not in restarted.stderr  # started over from epoch 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--resume", "runs/nope"], "--resume runs/nope: no such run directory"),
        (["--resume", "runs"], "--resume runs: not a dlcli run directory (no run.json)"),
    ],
)
def test_resume_of_something_that_is_not_a_run(arguments: list[str], message: str) -> None:
    Path("runs").mkdir()
    result = train(*arguments)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"


@pytest.mark.parametrize(
    ("run_json", "reason"),
    [
        (
            "{not json",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1, 2]", "not a JSON object"),
        ('{"spec_file": null}', "`spec_dir` is missing"),
        ('{"spec_dir": "/x", "spec_file": 3}', "`spec_file` is not a path"),
        (
            '{"spec_dir": "/x", "spec_file": null, "overrides": "a=1"}',
            "`overrides` is not a list of KEY=VALUE strings",
        ),
        ("\udcff", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    ],
)
def test_a_damaged_run_record_is_one_line_and_touches_nothing(
    stopped: dict[str, Stopped], tmp_path: Path, run_json: str, reason: str
) -> None:
    """A damaged run.json is one `Error:` line naming it, and the run folder is left untouched."""
    run_dir = copy_run(stopped, tmp_path)
    (run_dir / "run.json").write_bytes(run_json.encode("utf-8", "surrogateescape"))
    before = snapshot(run_dir)
    result = train("--resume", "runs/tiny-1")
    assert result.exit_code == 8
    assert result.stderr == (
        f"Error: --resume runs/tiny-1: run.json is damaged ({reason}); this run cannot be "
        "resumed, train again with: dlcli train SPEC\n"
    )
    assert snapshot(run_dir) == before


def _next_generation(run_dir: Path, state: bytes | None, weights: float = 1.0) -> None:
    """backup/.partial as a kill leaves it: `weights` of the weights file, and `state`."""
    backup = run_dir / "backup"
    (current,) = backup.glob("epoch-*")
    partial = backup / ".partial"
    partial.mkdir()
    data = (current / "weights.weights.h5").read_bytes()
    (partial / "weights.weights.h5").write_bytes(data[: int(len(data) * weights)])
    if state is not None:
        (partial / "state.json").write_bytes(state)


def _history_behind(run_dir: Path) -> None:
    lines = (run_dir / "history.csv").read_text().splitlines(keepends=True)
    (run_dir / "history.csv").write_text("".join(lines[:-1]))


def _older_generation_left(run_dir: Path) -> None:
    (current,) = (run_dir / "backup").glob("epoch-*")
    epoch = int(current.name.removeprefix("epoch-"))
    older = shutil.copytree(current, current.with_name(f"epoch-{epoch - 1}"))
    state = json.loads((older / "state.json").read_text())
    state |= {"epoch": epoch - 1, "history": state["history"][:-1]}
    (older / "state.json").write_text(json.dumps(state))


KILL_STATES = {  # what a kill -9 at each moment of a backup leaves (make test-crash kills for real)
    "while writing the next generation's weights": lambda run: _next_generation(run, None, 0.5),
    "after its weights, before state.json": lambda run: _next_generation(run, None),
    "while writing its state.json": lambda run: _next_generation(run, b""),
    "after the rename, before the older generation is removed": _older_generation_left,
    "after the backup, before history.csv has the epoch": _history_behind,
    "while saving model.keras": lambda run: (run / ".model.keras.tmp.keras").write_bytes(b"PK"),
}


@pytest.mark.parametrize("kill", KILL_STATES.values(), ids=KILL_STATES.keys())
def test_a_run_killed_during_a_backup_resumes_from_the_last_complete_one(
    stopped: dict[str, Stopped], tmp_path: Path, kill: Any
) -> None:
    """Before (Keras's BackupAndRestore): an empty training_metadata.json refused to resume,
    weights newer than their epoch count trained an epoch too many, history had a gap."""
    run_dir = copy_run(stopped, tmp_path)
    kill(run_dir)
    result = train("--resume", "runs/tiny-1")
    assert result.exit_code == 0, result.output
    backed_up = stopped["SIGTERM"].backup_epoch
    assert f"Resuming after epoch {backed_up} of {EPOCHS}, from its backup\n" in result.stderr
    assert history_epochs(run_dir) == list(range(1, EPOCHS + 1))
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == EPOCHS
    assert artifact.load(run_dir / "model.keras").metadata.training.epochs == EPOCHS
    assert sorted(path.name for path in run_dir.iterdir()) == FINISHED_RUN_FILES


def test_a_run_killed_after_its_model_is_finished_by_resume(
    stopped: dict[str, Stopped], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after metrics.json (model.keras saved, no curves yet) is finished by
    --resume."""
    from dlcli.utils import plots

    run_dir = copy_run(stopped, tmp_path)
    with monkeypatch.context() as dies:
        dies.setattr(plots, "save_curves", _raise(RuntimeError("killed here")))
        assert isinstance(train("--resume", "runs/tiny-1").exception, RuntimeError)
    assert {"model.keras", "metrics.json"} <= {path.name for path in run_dir.iterdir()}
    assert not (run_dir / "curves.png").exists()
    import keras

    saved = keras.saving.load_model(run_dir / "model.keras").get_weights()
    result = train("--resume", "runs/tiny-1")
    assert result.exit_code == 0, result.output
    assert f"Resuming after epoch {EPOCHS} of {EPOCHS}, from its backup\n" in result.stderr
    assert (run_dir / "curves.png").is_file() and not (run_dir / "backup").exists()
    assert history_epochs(run_dir) == list(range(1, EPOCHS + 1))
    finished = keras.saving.load_model(run_dir / "model.keras").get_weights()
    for before, after in zip(saved, finished, strict=True):  # finished from the last backup
        np.testing.assert_array_equal(before, after)


def _weights_cut_short(generation: Path) -> None:
    weights = generation / "weights.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])


def _state_garbled(generation: Path) -> None:
    (generation / "state.json").write_text("{epoch: 3")


def _state_missing(generation: Path) -> None:
    (generation / "state.json").unlink()


UNREADABLE_H5 = r"Unable to synchronously open file \(.+\)"
CORRUPTIONS = {  # damage after the backup was written (the disk, a person)
    "weights cut short": (_weights_cut_short, UNREADABLE_H5),
    "state.json garbled": (
        _state_garbled,
        re.escape(
            "epoch-N/state.json: Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1)"
        ),
    ),
    "state.json missing": (
        _state_missing,
        re.escape("epoch-N/state.json: [Errno 2] No such file or directory"),
    ),
}


@pytest.mark.parametrize(("corrupt", "reason"), CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_backup_is_reported_never_ignored(
    stopped: dict[str, Stopped], tmp_path: Path, corrupt: Any, reason: str
) -> None:
    run_dir = copy_run(stopped, tmp_path)
    (generation,) = (run_dir / "backup").iterdir()
    corrupt(generation)
    reason = reason.replace(re.escape("epoch-N"), generation.name)
    before = snapshot(run_dir)
    result = train("--resume", "runs/tiny-1")
    assert result.exit_code == 8, result.output
    assert re.fullmatch(
        rf"Error: the backup in runs/tiny-1/backup cannot be restored \({reason}\); start the "
        r"run over with: dlcli train --resume runs/tiny-1 --restart",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr
    assert snapshot(run_dir) == before


def test_set_with_resume_is_not_silently_ignored(
    stopped: dict[str, Stopped], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def fit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("resumed as if --set had not been given")

    monkeypatch.setattr(keras.Model, "fit", fit)
    run_dir = copy_run(stopped, tmp_path)
    before = snapshot(run_dir)
    result = train("--resume", "runs/tiny-1", "--set", "fit.batch_size=4")
    assert result.exit_code == 2 and "--set fit.batch_size=4" in result.stderr, result.output
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------------------------------------
# Out of memory


def _out_of_memory(*args: Any, **kwargs: Any) -> None:
    import tensorflow as tf

    raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")


def test_out_of_memory_suggests_a_smaller_batch_and_keeps_the_backup(
    stopped: dict[str, Stopped], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    run_dir = copy_run(stopped, tmp_path)
    before = snapshot(run_dir)
    monkeypatch.setattr(keras.Model, "fit", _out_of_memory)
    result = train("--resume", "runs/tiny-1")
    assert result.exit_code == 10
    assert result.stderr.endswith(
        "Error: out of memory with batch_size 8: train again with a smaller `fit.batch_size`, "
        f"e.g. --set fit.batch_size=4; the backup of epoch {stopped['SIGINT'].backup_epoch} is "
        "in runs/tiny-1/backup\n"
    )
    assert snapshot(run_dir) == before


def test_out_of_memory_before_any_backup_claims_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    write_classes(tmp_path)
    monkeypatch.setattr(keras.Model, "fit", _out_of_memory)
    result = train("spec.yaml")
    assert result.exit_code == 10
    backup = tmp_path / "runs" / "tiny-1" / "backup"
    assert not backup.exists()
    assert result.stderr.endswith(
        "Error: out of memory with batch_size 8: train again with a smaller `fit.batch_size`, "
        "e.g. --set fit.batch_size=4; no backup had been written yet\n"
    )  # was: a phrase the code never writes was asserted absent, which cannot fail


# ---------------------------------------------------------------------------------------------
# NaN and Inf loss


@pytest.fixture(scope="module")
def diverged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict]:
    """An earlier good run, then the same spec diverging in epoch 2, and in epoch 1."""
    folder = tmp_path_factory.mktemp("diverged").resolve()
    write_regression_data(folder)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    try:
        good = train("spec.yaml", "--set", "fit.epochs=1")
        assert good.exit_code == 0, good.output
        earlier = snapshot(folder / "runs" / "diverge-1")
        results = {
            "epoch 2": train("spec.yaml"),
            "epoch 1": train(
                "spec.yaml", "--set", "compile.optimizer={SGD: {learning_rate: 1.0e+30}}"
            ),
        }
    finally:
        monkeypatch.undo()
    return folder, results, earlier


def test_a_diverging_loss_stops_with_its_epoch_and_batch(
    diverged: tuple[Path, dict[str, Any], dict],
) -> None:
    folder, results, earlier = diverged
    result, run_dir = results["epoch 2"], folder / "runs" / "diverge-2"
    assert result.exit_code == 9, result.output
    found = re.fullmatch(
        r"Error: the loss became (nan|inf) in epoch 2 by batch (\d); training stopped and no "
        rf"model was saved \(the backup of epoch 1 is in {re.escape(str(run_dir))}/backup\); "
        r"lower the learning rate or check the data for extreme values",
        result.stderr.strip().splitlines()[-1],
    )
    assert found, result.stderr
    assert 1 <= int(found[2]) <= 8
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    assert history_epochs(run_dir) == [1] and backup_epoch(run_dir) == 1
    import h5py

    arrays: list[np.ndarray] = []
    with h5py.File(run_dir / "backup" / "epoch-1" / "weights.weights.h5") as weights:
        weights.visititems(
            lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None
        )
    assert arrays and all(np.isfinite(array).all() for array in arrays)
    assert snapshot(folder / "runs" / "diverge-1") == earlier  # the earlier model is untouched


def test_a_loss_diverging_in_the_first_epoch_says_there_is_no_backup(
    diverged: tuple[Path, dict[str, Any], dict],
) -> None:
    folder, results, _ = diverged
    result, run_dir = results["epoch 1"], folder / "runs" / "diverge-3"
    assert result.exit_code == 9, result.output
    assert re.fullmatch(
        r"Error: the loss became (nan|inf) in epoch 1 by batch \d; training stopped and no model "
        r"was saved \(no backup had been written yet\); lower the learning rate "
        r"or check the data for extreme values",
        result.stderr.strip().splitlines()[-1],
    ), result.stderr
    assert not (run_dir / "model.keras").exists() and not (run_dir / "backup").exists()


# ---------------------------------------------------------------------------------------------
# Files are written safely
# The tests run as root, for whom a read-only folder (chmod) is writable anyway, so a read-only
# folder and a full disk are simulated by making the system call fail as it would.


def _raise(error: OSError) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def _replace_fails_for(target: Path) -> Any:
    """os.replace, except that moving a file onto `target` finds the disk full."""
    real = os.replace

    def replace(source: Any, destination: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(destination) == target:
            raise DISK_FULL
        return real(source, destination, *args, **kwargs)

    return replace


def _partial_write(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Temporary files take the first 10 bytes, then the disk is full."""
    real = os.fdopen

    def fdopen(*args: Any, **kwargs: Any) -> Any:
        handle = real(*args, **kwargs)

        def write(data: bytes) -> int:
            real_write(data[:10])
            raise DISK_FULL

        real_write, handle.write = handle.write, write
        return handle

    monkeypatch.setattr(os, "fdopen", fdopen)


def _read_only(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Creating a file in the target's folder is refused."""
    real = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).parent == target.parent and flags & os.O_CREAT:
            raise READ_ONLY
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)


READ_ONLY = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
FAILURES = {
    "disk full while writing": (_partial_write, "No space left on device"),
    "disk full at fsync": (
        lambda m, target: m.setattr(os, "fsync", _raise(DISK_FULL)),
        "No space left on device",
    ),
    "disk full at the move": (
        lambda m, target: m.setattr(os, "replace", _replace_fails_for(target)),
        "No space left on device",
    ),
    "read-only folder": (_read_only, "Permission denied"),
}


@pytest.mark.parametrize("writer", ["atomic_write", "write_json"])
@pytest.mark.parametrize(("fail", "reason"), FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_write_keeps_the_earlier_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str, fail: Any, reason: str
) -> None:
    target = tmp_path / "metrics.json"
    target.write_text('{"loss": 0.25}\n')
    fail(monkeypatch, target)
    with pytest.raises(OutputError) as caught:
        if writer == "atomic_write":
            artifact.atomic_write(target, b'{"loss": 0.5}\n')
        else:
            artifact.write_json(target, {"loss": 0.5})
    assert str(caught.value) == f"cannot write {target}: {reason}"
    assert target.read_text() == '{"loss": 0.25}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_successful_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "evaluation.json"
    target.write_text("old")
    artifact.write_json(target, {"accuracy": 0.75})
    assert json.loads(target.read_text()) == {"accuracy": 0.75}
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]


@pytest.fixture(scope="module")
def small_model() -> Any:
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _save_partially_then_fail(path: Any, *args: Any, **kwargs: Any) -> None:
    Path(path).write_bytes(b"PK\x03\x04 half a model")
    raise DISK_FULL


SAVE_FAILURES = {
    "disk full while saving": (
        lambda m, model, target: m.setattr(model, "save", _save_partially_then_fail),
        "No space left on device",
    ),
    "disk full at the move": (
        lambda m, model, target: m.setattr(os, "replace", _replace_fails_for(target)),
        "No space left on device",
    ),
    "read-only folder": (lambda m, model, target: _read_only(m, target), "Permission denied"),
}


@pytest.mark.parametrize(("fail", "reason"), SAVE_FAILURES.values(), ids=SAVE_FAILURES.keys())
def test_a_failed_model_save_keeps_the_earlier_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_model: Any, fail: Any, reason: str
) -> None:
    target = tmp_path / "model.keras"
    artifact.save(small_model, model_info(), target)
    before = target.read_bytes()
    fail(monkeypatch, small_model, target)
    with pytest.raises(OutputError) as caught:
        artifact.save(small_model, model_info(), target)
    assert str(caught.value) == f"cannot write {target}: {reason}"
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
    monkeypatch.undo()
    assert artifact.load(target).metadata == model_info()


def test_an_unwritable_output_folder_is_reported_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    write_classes(tmp_path)
    (tmp_path / "runs").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: (
            False if Path(p) == tmp_path / "runs" and mode & os.W_OK else real_access(p, mode, **kw)
        ),
    )
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("training started"))
    result = train("spec.yaml")
    assert result.exit_code == 11
    assert result.stderr == f"Error: cannot write to {tmp_path / 'runs'}: permission denied\n"
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_full_disk_when_creating_the_run_directory_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlcli.runs.record import new_run_dir

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "tiny-1":
            raise DISK_FULL
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(OutputError) as caught:
        new_run_dir(tmp_path / "runs", "tiny")
    run_dir = tmp_path / "runs" / "tiny-1"
    assert str(caught.value) == f"cannot create {run_dir}: No space left on device"


@pytest.fixture(scope="module")
def save_failed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A 2-epoch run whose model.keras cannot be written at the end (disk full)."""
    folder = tmp_path_factory.mktemp("save_failed").resolve()
    write_regression_data(folder)
    run_dir = folder / "runs" / "diverge-1"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    monkeypatch.setattr(os, "replace", _replace_fails_for(run_dir / "model.keras"))
    try:
        result = train(
            "spec.yaml",
            "--set",
            "fit.epochs=2",
            "--set",
            "compile.optimizer={SGD: {learning_rate: 0.01}}",
        )
    finally:
        monkeypatch.undo()
    return result, run_dir


def test_a_model_that_cannot_be_saved_names_the_path(save_failed: tuple[Any, Path]) -> None:
    result, run_dir = save_failed
    assert result.exit_code == 11, result.output
    assert result.stderr.endswith(
        f"Error: cannot write {run_dir / 'model.keras'}: No space left on device\n"
    )
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_a_model_that_cannot_be_saved_keeps_the_backup(save_failed: tuple[Any, Path]) -> None:
    _, run_dir = save_failed
    assert (run_dir / "backup" / "epoch-2" / "weights.weights.h5").is_file()


def test_a_full_disk_while_writing_the_backup_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    write_regression_data(tmp_path)
    real_save_weights, calls = keras.Model.save_weights, []

    def save_weights(self: Any, filepath: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(filepath)
        if len(calls) == 2:  # the backup at the end of epoch 2
            raise DISK_FULL
        real_save_weights(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    result = train(
        "spec.yaml",
        "--set",
        "fit.epochs=3",
        "--set",
        "compile.optimizer={SGD: {learning_rate: 0.01}}",
    )
    assert result.exit_code == 11, result.output
    backup = tmp_path / "runs" / "diverge-1" / "backup"
    assert result.stderr.endswith(
        f"Error: cannot write the backup of epoch 2 in {backup}: No space left on device; the "
        f"backup of epoch 1 is in {backup}\n"
    )  # one line: before, h5py's error printed over several
    assert sorted(path.name for path in backup.iterdir()) == ["epoch-1"]
