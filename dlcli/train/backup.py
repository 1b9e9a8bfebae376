"""Backups of a run in training: after each epoch, one generation made current by one rename
(after each compiled program, when one runs several epochs: dlcli.train.loop).

A generation, `backup/epoch-<N>/`, holds everything a resumed run needs to go on as the
uninterrupted run would: `weights.weights.h5` (the model's and the optimizer's variables, by
Keras's `save_weights`) and `state.json` (the epoch count N, the phase of a fine-tuning run
that epoch N trained in, the states of the layers' random seed generators, and the history rows
of epochs 1 to N). It is written in `backup/.partial/`,
each file flushed to disk, and made current by renaming that folder to `epoch-<N>`; only then
are older generations removed and history.csv rewritten from the rows. Killed at any moment,
a run leaves its last complete generation (or none), and resuming it starts from there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.errors import OutputError, TrainingError
from dlcli.runs.folder import BACKUP_DIR, GENERATION
from dlcli.runs.record import read_rows, shell_path, write_history

WEIGHTS = "weights.weights.h5"  # Keras saves weights only to a name ending .weights.h5
KERAS_WEIGHTS = "model.weights.h5"  # the same file inside a .keras archive
STATE = "state.json"
PARTIAL = ".partial"


@dataclass(frozen=True)
class Generation:
    """A complete backup: the epochs it holds, where its weights are, and what else it kept."""

    epoch: int
    weights: Path
    seeds: list[list[int]] | None  # the seed generators' states (`model.variables` order)
    history: list[dict[str, float]]  # epochs 1 to `epoch`, each row with its "epoch"
    phase: int  # 2: the second phase of `fit.fine_tune` (its layers unfrozen, recompiled)


def latest(run_dir: Path) -> Generation | None:
    """The run's newest generation, None when no epoch was backed up.

    Raises:
        TrainingError: the generation cannot be read (damaged after it was written).
    """
    found = [
        (int(match[1]), path)
        for path in _entries(run_dir / BACKUP_DIR)
        if (match := GENERATION.fullmatch(path.name))
    ]
    if not found:
        return None
    epoch, path = max(found)
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        if state["epoch"] != epoch or len(state["history"]) != epoch:
            raise ValueError(f"it holds epoch {state['epoch']}")
        return Generation(epoch, path / WEIGHTS, state["seeds"], state["history"], state["phase"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"[Errno {error.errno}] {error.strerror}" if isinstance(error, OSError) else error
        raise TrainingError(
            f"the backup in {run_dir / BACKUP_DIR} cannot be restored ({path.name}/{STATE}: "
            f"{reason}); start the run over with: dlcli train --resume {shell_path(run_dir)} "
            "--restart"
        ) from error


def note(run_dir: Path) -> str:
    """Where the run's backup is, for the errors that end a run."""
    try:
        generation = latest(run_dir)
    except TrainingError:
        return f"the backup in {run_dir / BACKUP_DIR} cannot be restored"
    if generation is None:
        return "no backup had been written yet"
    return f"the backup of epoch {generation.epoch} is in {run_dir / BACKUP_DIR}"


def tidy(run_dir: Path) -> None:
    """Remove what a killed run left in its backup: a half-written generation and any
    generation older than the newest. The caller holds the run's lock."""
    entries = _entries(run_dir / BACKUP_DIR)
    newest = max(
        (path.name for path in entries if GENERATION.fullmatch(path.name)),
        key=lambda name: int(name[6:]),
        default=None,
    )
    for path in entries:
        if path.name != newest:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def drop(run_dir: Path) -> None:
    """Remove the backup of a finished run: first, by one rename, its generation stops being
    one (a kill from then on leaves a finished run), then the files go."""
    backup = run_dir / BACKUP_DIR
    for path in _entries(backup):
        if GENERATION.fullmatch(path.name):
            os.rename(path, backup / PARTIAL)
            break
    shutil.rmtree(backup, ignore_errors=True)


def restore(model: Any, generation: Generation) -> None:
    """Load a generation into a compiled model: weights, optimizer state and seed states."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(generation.weights)
    if generation.seeds is None:  # from a finished run's model.keras: Keras keeps no seeds
        return
    seeds = _seed_states(model)
    if len(seeds) != len(generation.seeds):
        raise ValueError(f"{len(generation.seeds)} seed states for {len(seeds)} generators")
    for variable, value in zip(seeds, generation.seeds, strict=True):
        variable.assign(value)


def callback(run_dir: Path, history: list[dict[str, float]], *, at_each_epoch: bool = True) -> Any:
    """A Keras callback that backs the run up after every epoch (see the module docstring);
    `history` holds the rows of the epochs already backed up, and gets each new one.

    Not `at_each_epoch` (epochs fused into one compiled program, dlcli.train.loop): each epoch's
    row is kept, and the callback's `write()`, called once the model holds the last such
    epoch's weights, backs up all of them in one generation.

    Raises (from `fit`, or `write`):
        OutputError: a generation could not be written (disk full); the previous one stays.
    """
    import keras

    class Backup(keras.callbacks.Callback):
        phase = 1  # set to 2 when the second phase of `fit.fine_tune` begins

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict[str, float]] = []  # epochs ended since the last generation

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
            if at_each_epoch:
                self.write()

        def write(self) -> None:
            epoch = len(history) + len(self.rows)
            if int(self.model.optimizer.iterations.numpy()) == 0:  # a broken pipeline: no batch
                raise TrainingError(
                    f"epoch {epoch} ran no training step (the training data gave no "
                    f"batch); nothing was saved in {shell_path(run_dir)}"
                )
            try:
                seeds = [_as_list(variable) for variable in _seed_states(self.model)]
                rows = [*history, *self.rows]
                save = self.model.save_weights
                _write_generation(run_dir / BACKUP_DIR, save, rows, seeds, self.phase)
            except OSError as error:
                shutil.rmtree(run_dir / BACKUP_DIR / PARTIAL, ignore_errors=True)
                kept = note(run_dir) if history else "there is no earlier backup to resume from"
                raise OutputError(
                    f"cannot write the backup of epoch {epoch} in {run_dir / BACKUP_DIR}: "
                    f"{_reason(error)}; {kept}"
                ) from error
            history.extend(self.rows)
            self.rows.clear()
            write_history(run_dir / "history.csv", history)

    return Backup()


def from_finished(run_dir: Path, phase: int) -> None:
    """Make a finished run's model.keras (its weights and optimizer state, as Keras saved
    them) and history.csv the run's backup generation, for more epochs in `phase` (the one it
    ended in). The layers' seed states are not in model.keras: the added epochs draw other
    Dropout masks than a run asked for all its epochs at once would."""
    history = read_rows(run_dir / "history.csv")
    with zipfile.ZipFile(run_dir / "model.keras") as archive:
        weights = archive.read(KERAS_WEIGHTS)
    _write_generation(
        run_dir / BACKUP_DIR, lambda path: path.write_bytes(weights), history, None, phase
    )


def _write_generation(
    backup: Path,
    save_weights: Callable[[Path], object],  # what it returns is not used
    history: list[dict[str, float]],
    seeds: list[list[int]] | None,
    phase: int,
) -> None:
    epoch = len(history)
    partial = backup / PARTIAL
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    save_weights(partial / WEIGHTS)
    state = {"epoch": epoch, "phase": phase, "seeds": seeds, "history": history}
    (partial / STATE).write_text(json.dumps(state), encoding="utf-8")
    for path in (partial / WEIGHTS, partial / STATE, partial):
        _sync(path)
    os.rename(partial, backup / f"epoch-{epoch}")
    _sync(backup)
    for path in _entries(backup):
        match = GENERATION.fullmatch(path.name)
        if match and int(match[1]) < epoch:
            shutil.rmtree(path)


def _reason(error: OSError) -> str:
    """The system's words for a failed write; h5py puts them inside a longer message."""
    found = re.search(r"error message = '([^']+)'", str(error))
    return found[1] if found else error.strerror or str(error).splitlines()[0]


def _seed_states(model: Any) -> list[Any]:
    """The state variables of the model's seed generators (Dropout, random augmentation):
    the variables Keras lists in `model.variables` but not in `model.weights`."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _as_list(variable: Any) -> list[int]:
    return [int(value) for value in variable.numpy().ravel()]


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _sync(path: Path) -> None:
    """Flush a file or a folder (its entries) to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
