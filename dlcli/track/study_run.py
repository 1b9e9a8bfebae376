"""A search mirrored to MLflow: the study is a parent run, each trial a child run.

Each trial is a normal training run (dlcli.track.tracked) whose MLflow run is a child of the
study's (`mlflow.parentRunId`), tagged with its trial number; once the trial ends, its child
is tagged with the trial's state (complete, pruned, failed) and, at the end of the search, the
best trial's child is tagged `dlcli.best`. The parent holds the search's params, the best value
and Optuna's plots. The parent's id is kept in the Optuna study (a user attribute), so the same
command run again, or by another process, continues the same parent run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import Interrupted
from dlcli.track.mlflow_run import (
    MlflowRun,
    client,
    flatten,
    local_artifacts,
    log_params,
    one_line,
    open_run,
    truncated,
)
from dlcli.track.tracked import Notes, TrackRequest

if TYPE_CHECKING:
    from dlcli.tune.best import Best
    from dlcli.tune.study import Study, TrialRow

PARENT_ATTRIBUTE = "mlflow_run_id"  # the Optuna study's user attribute naming the parent run
TRIAL_TAG = "dlcli.trial"


@dataclass
class StudyRun:
    """The study's parent run and where its trials' child runs go."""

    tracker: Any  # MlflowClient
    run: MlflowRun
    experiment: str
    view: Notes
    failed: bool = False

    def trial_request(self, number: int) -> TrackRequest:
        """Where trial `number` is tracked: a child run of the study's."""
        tags = {"mlflow.parentRunId": self.run.run_id, TRIAL_TAG: str(number)}
        return TrackRequest(uri=self.run.tracking_uri, experiment=self.experiment, tags=tags)

    def trial_done(self, row: TrialRow) -> None:
        """Tag the trial's child run with its state (and the epoch a pruned trial stopped at)."""
        tags = {"dlcli.state": row.state}
        if row.state == "pruned" and row.epochs is not None:
            tags["dlcli.pruned_after_epoch"] = str(row.epochs)
        if row.reason:
            tags["dlcli.reason"] = row.reason[:5000]
        self._tag_child(row.number, tags)

    def finish(self, best: Best, metric: str, files: list[Path]) -> None:
        """Tag the best trial (its child run and the parent), log the search's files (Optuna's
        plots, best.yaml, tune.json) to the parent, and end it FINISHED."""
        self._tag_child(best.trial.number, {"dlcli.best": "true"})
        self._safely(lambda: self._finish(best, metric, [path for path in files if path.is_file()]))

    def _finish(self, best: Best, metric: str, files: list[Path]) -> None:
        run_id = self.run.run_id
        self.tracker.set_tag(run_id, "dlcli.best_trial", str(best.trial.number))
        if best.trial.value is not None:
            self.tracker.log_metric(run_id, f"best_{metric}", best.trial.value)
        for name, value in (best.test_metrics or {}).items():
            self.tracker.log_metric(run_id, f"best_{best.evaluated_on}_{name}", value)
        for path in files:
            self.tracker.log_artifact(run_id, str(path))
        self.tracker.set_terminated(run_id, "FINISHED")

    def end(self, status: str) -> None:
        self._safely(lambda: self.tracker.set_terminated(self.run.run_id, status))

    def _tag_child(self, number: int, tags: dict[str, str]) -> None:
        def tag() -> None:
            found = self.tracker.search_runs(
                [self.run.experiment_id],
                f"tags.`mlflow.parentRunId` = '{self.run.run_id}' "
                f"and tags.`{TRIAL_TAG}` = '{number}'",
                max_results=1,
            )
            for child in found:
                for key, value in tags.items():
                    self.tracker.set_tag(child.info.run_id, key, value)

        self._safely(tag)

    def _safely(self, action: Any) -> None:
        """Run `action` unless the server failed before; a failure is said once."""
        if self.failed:
            return
        try:
            action()
        except Exception as error:
            self.failed = True
            self.view.note(
                f"MLflow: {self.run.tracking_uri} did not answer ({one_line(error)}); the "
                "search goes on without tracking"
            )


@contextmanager
def study_tracked(
    uri: str | None, experiment: str, study: Study, spec_data: dict[str, Any], view: Notes
) -> Iterator[StudyRun | None]:
    """The study's parent run while the block searches: opened (or continued: the study
    names it), ended KILLED (Ctrl-C), FAILED (an error) or by the block (`StudyRun.finish`).

    Args:
        uri: the tracking URI (None: not tracked).
        experiment: the MLflow experiment.
        study: the search's study (dlcli.tune.study).
        spec_data: the resolved spec with its `search:` section, logged as params.
        view: where the one line about an unreachable server goes.

    Example:
        with study_tracked(uri, "iris", study, spec_data, view) as parent:
            request = parent.trial_request(0) if parent else None
    """
    parent = _open(uri, experiment, study, spec_data, view) if uri else None
    if parent is None:
        yield None
        return
    try:
        yield parent
    except (Interrupted, KeyboardInterrupt):
        parent.end("KILLED")
        raise
    except BaseException:
        parent.end("FAILED")
        raise


def _open(
    uri: str, experiment: str, study: Study, spec_data: dict[str, Any], view: Notes
) -> StudyRun | None:
    recorded = study.optuna.user_attrs.get(PARENT_ATTRIBUTE)
    try:
        if isinstance(recorded, dict) and recorded.get("tracking_uri") == uri:
            run = MlflowRun.from_dict(recorded)
            if run is not None:
                tracker = client(uri)
                tracker.update_run(run.run_id, status="RUNNING")
                return StudyRun(tracker, run, experiment, view)
        tracker, run = open_run(
            uri,
            experiment,
            study.name,
            tags={"dlcli.study": study.name, "dlcli.study_folder": str(study.folder)},
            artifacts=local_artifacts(uri),
        )
        params, _ = truncated(flatten(spec_data))
        log_params(tracker, run.run_id, params)
    except Exception as error:
        view.note(
            f"MLflow: {uri} could not be reached ({one_line(error)}); the search goes on "
            "without tracking"
        )
        return None
    study.optuna.set_user_attr(PARENT_ATTRIBUTE, run.to_dict())
    return StudyRun(tracker, run, experiment, view)
