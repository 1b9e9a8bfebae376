"""`dlcli tune`: a hyperparameter search over `--set` key paths, on an Optuna study.

`tune()` reads as the search: check the spec and its `search:` section (before TensorFlow
loads), open the study (`study`), run trials until the study has `search.trials` of them, each
a normal run in the study's folder scored on the validation split and pruned on its per-epoch
reports (`trial`), then write the best spec, the plots, and the best trial's test scores
(`best`). The parts: `space` (the search as the spec states it), `study` (folder, storage,
trials), `trial` (one trial), `best` (what a finished search leaves), `report` (the terminal).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlcli.errors import Interrupted

if TYPE_CHECKING:  # the rest is imported once the spec is checked: its mistakes come fast
    from dlcli.spec.schema import Spec
    from dlcli.track.study_run import StudyRun
    from dlcli.train.pipeline import ProgressView
    from dlcli.tune.best import Best
    from dlcli.tune.study import Study, TrialRow


class TuneView(Protocol):
    """What a search reports as it goes (rendered by dlcli.cli.render_tune)."""

    def start(self, study: Study, spec: Spec, trials: int) -> None: ...
    def progress(self, number: int, values: dict[str, Any]) -> ProgressView: ...
    def trial_done(self, row: TrialRow) -> None: ...


@dataclass(frozen=True)
class TuneResult:
    """What `tune` did: the study, its trials, the best one and its test scores."""

    folder: Path
    study: str
    storage: str
    metric: str
    direction: str
    trials: list[TrialRow]
    ran: list[int]  # the trials this process ran
    stopped: str  # why this process started no more: "trials" or "timeout"
    best: Best
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "study": self.study,
            "storage": self.storage,
            "metric": self.metric,
            "direction": self.direction,
            "stopped": self.stopped,
            "ran": self.ran,
            "trials": [row.to_dict() for row in self.trials],
            "best": self.best.to_dict(),
            "notes": self.notes,
        }


class _Notes:
    """Lines said during the search, shown with its result (an MLflow server that failed)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)


def tune(
    spec_path: Path,
    overrides: Sequence[str] = (),
    *,
    view: TuneView,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    mlflow: str | None = None,
) -> TuneResult:
    """Search the spec's `search.space` for the best `search.metric`, trial after trial.

    Args:
        spec_path: a YAML spec with a `search:` section.
        overrides: `KEY.PATH=VALUE` strings applied to the spec (and to every trial).
        view: where the trials are reported.
        trials: the study's number of trials (`search.trials` when None), counted over every
            process that shares it; a study that has them already runs none.
        timeout: start no trial after this many seconds (`search.timeout` when None).
        storage: an Optuna storage URL shared by several processes or machines; None for
            `study.db` in the study's folder.
        study_name: the study's name in the storage (`<name>-tune` when None).
        mlflow: `--mlflow` ("" or a URI; see dlcli.track.mlflow_run.tracking_uri): the study
            as an MLflow parent run, each trial a child run.

    Returns:
        A TuneResult: the study folder, every trial, the best one with its spec (best.yaml),
        plots and test scores.

    Raises:
        ConfigError: the spec, its search space or its metric; StudyError: the storage;
        TrainingError: no trial completed; Interrupted: Ctrl-C or SIGTERM (the finished trials
        are kept, and the same command continues the study).

    Example:
        tune(Path("configs/mnist_tune.yaml"), ["search.trials=4"], view=view).best.params
    """
    from dlcli.data.load import check_files
    from dlcli.spec.load import load_spec
    from dlcli.tune.space import check_search, direction, first_trials, study_key, study_seed

    spec = load_spec(spec_path, overrides)
    check_search(spec, spec_path)
    check_files(spec.dataset, spec_path.parent, spec_path)
    assert spec.search is not None
    from dlcli.track.mlflow_run import experiment_name, require_mlflow, tracking_uri

    uri = tracking_uri(mlflow, spec)
    if uri is not None:
        require_mlflow("--mlflow" if mlflow is not None else "output.mlflow")
    from dlcli.model.artifact import write_json
    from dlcli.runs.record import made, output_folder
    from dlcli.tune.best import finish
    from dlcli.tune.study import open_study, rows

    goal, timeout = trials or spec.search.trials, timeout or spec.search.timeout
    key = study_key(spec)
    study = open_study(
        made(output_folder(spec)),  # the study's folder goes in it at once
        spec.name,
        key,
        storage=storage,
        name=study_name,
        direction=direction(spec.search.metric, spec.search.direction),
        pruner=spec.search.pruner,
        seed=study_seed(spec, key),
        first_trials=first_trials(spec.search),
    )
    view.start(study, spec, goal)
    from dlcli.track.study_run import study_tracked

    said = _Notes()
    spec_data = spec.model_dump(mode="json", exclude_none=True, by_alias=True)
    with study_tracked(uri, experiment_name(spec), study, spec_data, said) as parent:
        ran, stopped = _search(study, spec_path, overrides, spec, view, goal, timeout, parent)
        best, notes = finish(study, spec_path, overrides, spec.search.metric)
        if parent is not None:
            files = [best.spec_file, *best.files.values()]
            parent.finish(best, spec.search.metric, files)
            notes.append(f"MLflow: study run {parent.run.run_id} at {parent.run.tracking_uri}")
    result = TuneResult(
        study.folder,
        study.name,
        study.storage,
        spec.search.metric,
        study.optuna.direction.name.lower(),
        rows(study.optuna),
        ran,
        stopped,
        best,
        [*said.lines, *notes],
    )
    write_json(study.folder / "tune.json", result.to_dict())
    return result


def _search(
    study: Study,
    spec_path: Path,
    overrides: Sequence[str],
    spec: Spec,
    view: TuneView,
    goal: int,
    timeout: float | None,
    parent: StudyRun | None,
) -> tuple[list[int], str]:
    """Run trials until the study has `goal` of them or `timeout` has passed; Ctrl-C (in a
    trial or between two) ends the search, keeping every finished trial."""
    from dlcli.runs.record import shell_path
    from dlcli.train.callbacks import latched_signals
    from dlcli.tune.study import counted, fail_stale, rows
    from dlcli.tune.trial import run_trial

    assert spec.search is not None
    # each trial traces its model's functions anew, which TensorFlow would warn about
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    started = time.monotonic()
    ran: list[int] = []  # the numbers of the trials this process ran
    try:
        with latched_signals() as latch:  # Ctrl-C between two trials waits for a safe point
            while True:
                fail_stale(study.optuna)  # a trial of a killed process no longer counts
                if latch.number:
                    raise Interrupted(signal.Signals(latch.number).name, 128 + latch.number)
                if counted(study.optuna) >= goal:
                    return ran, "trials"
                if timeout is not None and time.monotonic() - started >= timeout:
                    return ran, "timeout"
                number = run_trial(study, spec_path, overrides, spec.search, view, parent)
                ran.append(number)
                row = next(row for row in rows(study.optuna) if row.number == number)
                if parent is not None:
                    parent.trial_done(row)
                view.trial_done(row)
    except (Interrupted, KeyboardInterrupt) as error:
        what, code = (
            (str(error), error.exit_code) if isinstance(error, Interrupted) else ("SIGINT", 130)
        )
        kept = counted(study.optuna)
        raise Interrupted(
            f"{what}: stopped; the study's {kept} finished trial{'s' * (kept != 1)} "
            f"{'are' if kept != 1 else 'is'} kept in {shell_path(study.folder)}; continue "
            f"with the same command: dlcli tune {shell_path(spec_path)}",
            code,
        ) from None
