"""One trial of a search: sample the values, train the spec with them as a normal run in the
study's folder, report the metric after each epoch to the pruner, score the validation split.

A trial whose values make the model invalid, run out of memory or reach a NaN loss is a failed
trial with its one-line reason; the search goes on. Ctrl-C ends the trial and the search.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlcli.errors import ConfigError, DlcliError, Interrupted, OutputError
from dlcli.spec.schema import SearchSpec
from dlcli.train.backup import drop
from dlcli.train.pipeline import ProgressView, Trial, train
from dlcli.tune.space import as_overrides, sample
from dlcli.tune.study import Study, host, trial_folder

if TYPE_CHECKING:
    from dlcli.track.study_run import StudyRun


class TrialView(Protocol):
    """Where a trial's training reports."""

    def progress(self, number: int, values: dict[str, Any]) -> ProgressView: ...


class TrialFailed(Exception):
    """A trial ended without a result; the reason is recorded with the trial."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(reason)
        self.number = number


class MetricMissing(ConfigError):
    """`search.metric` is not among what the model reports: every trial would miss it."""


def run_trial(
    study: Study,
    spec_path: Path,
    overrides: Sequence[str],
    search: SearchSpec,
    view: TrialView,
    parent: StudyRun | None = None,
) -> int:
    """Run the study's next trial to its end (complete, pruned or failed); its number.

    Raises:
        Interrupted: SIGINT or SIGTERM; the trial is recorded as stopped, not failed.
        MetricMissing, OutputError: what would fail every trial ends the search.
    """
    outcome: dict[str, Any] = {}

    def objective(trial: Any) -> float:
        outcome["number"] = trial.number
        return _objective(trial, study, spec_path, overrides, search, view, parent)

    try:
        study.optuna.optimize(objective, n_trials=1, catch=(TrialFailed,))
    finally:
        import keras

        keras.backend.clear_session(free_memory=True)  # each trial builds its model anew
        gc.collect()
    return int(outcome["number"])


def _objective(
    trial: Any,
    study: Study,
    spec_path: Path,
    overrides: Sequence[str],
    search: SearchSpec,
    view: TrialView,
    parent: StudyRun | None,
) -> float:
    import optuna

    from dlcli.spec.load import load_spec

    values = sample(trial, search.space)
    run_dir = trial_folder(study, trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("host", host())
    pruning = _pruning_callback(trial, search.metric)
    settings = [*overrides, *as_overrides(values), f"seed={study.seed}", "output.onnx=false"]
    try:
        spec = load_spec(spec_path, settings).model_copy(update={"search": None})
        result = train(
            spec,
            spec_path.parent,
            view.progress(trial.number, values),
            spec_file=spec_path,
            overrides=settings,
            trial=Trial(run_dir, [pruning], parent.trial_request(trial.number) if parent else None),
        )
    except Interrupted as error:
        where = str(error).split(":")[0]  # "SIGINT in epoch 2, batch 10"
        trial.set_user_attr("stopped", f"{where}: interrupted")
        drop(run_dir)
        signal_name = where.split(" in ")[0]
        raise Interrupted(f"{signal_name} in trial {trial.number}", error.exit_code) from None
    except (MetricMissing, OutputError) as error:  # the search's, not this trial's
        trial.set_user_attr("stopped", f"the search stopped: {error}")
        drop(run_dir)
        raise
    except Exception as error:  # every failure is the trial's, with its reason
        reason = str(error) if isinstance(error, DlcliError) else f"{type(error).__name__}: {error}"
        reason = " ".join(reason.split())
        trial.set_user_attr("failure", reason[:500])
        drop(run_dir)  # its backup cannot be resumed by a search
        raise TrialFailed(trial.number, reason) from error
    epochs = len(result.history.get("loss", []))
    trial.set_user_attr("epochs", epochs)
    if result.weights_epoch != epochs:  # scored with restored weights, not the last epoch's
        trial.set_user_attr("weights_epoch", result.weights_epoch)
    name = search.metric.removeprefix("val_")
    if name not in result.test_metrics:
        raise MetricMissing(_missing(search.metric, [f"val_{n}" for n in result.test_metrics]))
    if pruning.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
    return result.test_metrics[name]


def _missing(metric: str, reported: list[str]) -> str:
    return (
        f"`search.metric` {metric} is not among what the model reports on the validation "
        f"split: {', '.join(reported)}"
    )


def _pruning_callback(trial: Any, metric: str) -> Any:
    """Reports `metric` after each epoch; stops training (kept as a pruned trial) when Optuna's
    pruner says the trial will not beat the others."""
    from dlcli.distribute.device import import_keras

    import_keras()  # quietly: TensorFlow's start-up lines are not the user's business
    import keras  # the module import_keras imported (a base class must be a module's name)

    class Pruning(keras.callbacks.Callback):
        pruned_at: int | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if metric not in logs:
                reported = [key for key in logs if key.startswith("val_")]
                if reported:  # a validation epoch without the metric: it is misnamed
                    raise MetricMissing(_missing(metric, reported))
                return  # no validation this epoch (fit.validation_freq)
            trial.report(float(logs[metric]), epoch + 1)
            last = epoch + 1 == self.params.get("epochs")  # a trial that ran them all completes
            if not last and trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return Pruning()
