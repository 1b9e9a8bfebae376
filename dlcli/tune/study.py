"""A search's study: its folder (`runs/<name>-tune-<n>/`), its Optuna storage (an SQLite file
in the folder, or any storage URL) and what its trials are.

Running the same `dlcli tune` again continues the newest study of the same spec; several
processes, on one machine or many, share a study through its storage. Optuna's heartbeat marks
a trial whose process was killed as failed, so another process can carry on.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.errors import StudyError
from dlcli.model.artifact import write_json
from dlcli.runs.record import new_run_dir
from dlcli.tune.storage import cannot_open, hide_password, open_storage

STUDY_RECORD = "study.json"  # which study the folder holds: name, storage, spec key
HEARTBEAT_SECONDS = 10  # a running trial's process says it is alive this often
GRACE_SECONDS = 30  # ... and a trial silent this long is taken as failed (its process killed)


@dataclass(frozen=True)
class Study:
    """An open study: where its files go, the Optuna study, and whether it had trials already."""

    folder: Path
    optuna: Any  # optuna.Study
    name: str
    storage: str  # the URL, as given or of the study.db in the folder
    seed: int
    continued: bool


@dataclass(frozen=True)
class TrialRow:
    """One trial as the table shows it."""

    number: int
    state: str  # complete, pruned, failed, running
    value: float | None
    params: dict[str, Any]
    seconds: float | None
    reason: str | None = None  # why it failed
    run_dir: str | None = None
    epochs: int | None = None
    weights_epoch: int | None = None  # the epoch whose weights were scored, if not the last

    def to_dict(self) -> dict[str, Any]:
        value = None if self.value is None or not math.isfinite(self.value) else self.value
        return {**self.__dict__, "value": value}


@contextmanager
def _quiet_optuna() -> Iterator[Any]:
    """Optuna, without its log lines (dlcli shows each trial) and experimental warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield optuna


@contextmanager
def _folder_lock(output_dir: Path) -> Iterator[None]:
    """One process at a time chooses or creates a study folder in `output_dir` (processes
    started together must find the same one): an OS lock on the folder, held for a moment."""
    handle = os.open(output_dir, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def _newest(output_dir: Path, base: str) -> Path | None:
    numbered = [
        (int(p.name.rsplit("-", 1)[1]), p)
        for p in output_dir.glob(f"{base}-*")
        if p.name.rsplit("-", 1)[1].isdigit() and p.is_dir()
    ]
    return max(numbered)[1] if numbered else None


def _record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / STUDY_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def open_study(
    output_dir: Path,
    spec_name: str,
    key: str,
    *,
    storage: str | None,
    name: str | None,
    direction: str,
    pruner: str,
    seed: int,
    first_trials: list[dict[str, Any]],
) -> Study:
    """Continue the newest study of this spec (`key`) in `output_dir`, or start one.

    Args:
        output_dir: where runs go (`output.dir`); the study's folder is made in it.
        spec_name: the spec's `name`: the folder is `<spec_name>-tune-<n>`.
        key: the spec's study key (`dlcli.tune.space.study_key`).
        storage: an Optuna storage URL; None for `study.db` in the folder.
        name: the study's name in the storage; `<spec_name>-tune` when None.
        direction: "maximize" or "minimize".
        pruner: "median", "hyperband" or "none".
        seed: the seed of every trial.
        first_trials: parameter values (as the study stores them) of the trials a new study
            runs before its sampler draws any.

    Raises:
        StudyError: the storage cannot be opened, or its study was made from another spec.
    """
    base, name = f"{spec_name}-tune", name or f"{spec_name}-tune"
    wanted = {"study": name, "storage": storage, "key": key}
    with _folder_lock(output_dir):
        newest = _newest(output_dir, base)
        folder = newest if newest and _record(newest) == wanted else None
        continued = folder is not None
        if folder is None:
            folder = new_run_dir(output_dir, base)
            write_json(folder / STUDY_RECORD, wanted)
        url = storage or f"sqlite:///{folder / 'study.db'}"
        optuna_study = _create(url, name, direction, pruner)
        _claim(optuna_study, key, seed, name, url, first_trials)
    return Study(folder, optuna_study, name, url, seed, continued or bool(counted(optuna_study)))


def _create(url: str, name: str, direction: str, pruner: str) -> Any:
    with _quiet_optuna() as optuna:
        pruners = {
            "median": optuna.pruners.MedianPruner(),  # after 5 trials, from the first epoch
            "hyperband": optuna.pruners.HyperbandPruner(),
            "none": optuna.pruners.NopPruner(),
        }
        storage = open_storage(
            url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
        )
        try:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                direction=direction,
                load_if_exists=True,
                sampler=optuna.samplers.TPESampler(),
                pruner=pruners[pruner],
            )
        except ValueError as error:  # a study of this name that optimises the other way
            raise StudyError(f"study {name} in {hide_password(url)}: {error}") from None
        except Exception as error:  # the server went away, or refused a statement
            raise cannot_open(url, error) from None


def _claim(
    study: Any, key: str, seed: int, name: str, url: str, first_trials: list[dict[str, Any]]
) -> None:
    """Mark the study as this spec's and queue its first trials, or refuse a study made from
    another spec."""
    recorded = study.user_attrs.get("spec_key")
    if recorded is None:
        study.set_user_attr("spec_key", key)
        study.set_user_attr("seed", seed)
        for params in first_trials:
            study.enqueue_trial(params, skip_if_exists=True)
    elif recorded != key:
        raise StudyError(
            f"study {name} in {hide_password(url)} was made from another spec (or another "
            "search); give this one its own name with --study NAME"
        )


def fail_stale(study: Any) -> None:
    """Trials whose process stopped sending heartbeats (killed) become failed trials."""
    with _quiet_optuna() as optuna:
        optuna.storages.fail_stale_trials(study)


def counted(study: Any) -> int:
    """The trials that count towards `search.trials`: finished, running, or failed for a
    reason of their own (not stopped by Ctrl-C or the search, not killed)."""
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(
        trial.state in finished
        or (trial.state == TrialState.FAIL and "failure" in trial.user_attrs)
        for trial in study.get_trials(deepcopy=False)
    )


def rows(study: Any) -> list[TrialRow]:
    """Every trial of the study, in order."""
    from optuna.trial import TrialState

    states = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }
    table = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        reason = attrs.get("failure") or attrs.get("stopped")
        if trial.state == TrialState.FAIL and reason is None:
            reason = "its process stopped without finishing it (killed?)"
        value = trial.value if trial.value is not None else _last(trial.intermediate_values)
        seconds = trial.duration.total_seconds() if trial.duration else None
        table.append(
            TrialRow(
                trial.number,
                states[trial.state],
                value,
                dict(trial.params),
                seconds,
                reason,
                attrs.get("run_dir"),
                attrs.get("epochs"),
                attrs.get("weights_epoch"),
            )
        )
    return table


def _last(values: dict[int, float]) -> float | None:
    return values[max(values)] if values else None


def trial_folder(study: Study, number: int) -> Path:
    """The run folder of trial `number` (made here)."""
    folder = study.folder / f"trial-{number}"
    folder.mkdir(exist_ok=True)
    return folder


def host() -> str:
    """This machine and process, recorded with each trial."""
    return f"{socket.gethostname()}:{os.getpid()}"
