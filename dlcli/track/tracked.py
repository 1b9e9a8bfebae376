"""A training run mirrored to an MLflow run, from its start to its end.

`tracked()` wraps fit and finish (dlcli.train.pipeline): it opens the MLflow run (or continues
the one run.json names, for `--resume`), logs the params, hands fit a callback for the
per-epoch values, and ends the run FINISHED (`Tracker.finish`: test metrics, times, files),
KILLED (Ctrl-C, SIGTERM) or FAILED. A tracking server that cannot be reached is said once on
the progress view; training and the run folder never depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dlcli.errors import Interrupted
from dlcli.track.callback import MetricsSender, current_learning_rate, epoch_callback
from dlcli.track.mlflow_run import (
    MlflowRun,
    continue_run,
    flatten,
    local_artifacts,
    log_params,
    one_line,
    open_run,
    truncated,
)

# what a finished run's folder holds that is worth keeping with the MLflow run
ARTIFACTS = (
    "spec.yaml",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion_matrix.png",
    "model.keras",
    "model.onnx",
)
SEND_TIMEOUT = 60.0  # seconds the end of a run waits for queued values


class Notes(Protocol):
    def note(self, text: str) -> None: ...


@dataclass(frozen=True)
class TrackRequest:
    """Track a run: at `uri`, in `experiment`, with these `tags` (a parent run's id makes it a
    child run: a trial of `dlcli tune`)."""

    uri: str
    experiment: str
    tags: dict[str, str] = field(default_factory=dict)


class Tracker:
    """One training run's MLflow run: its per-epoch callback, its end."""

    def __init__(self, tracker: Any, run: MlflowRun, view: Notes, logged: set[int]) -> None:
        self.run = run
        self._client, self._view = tracker, view
        self._sender = MetricsSender(tracker, run.run_id)
        self._sender.steps |= logged
        self._said = False
        self.callback = epoch_callback(self._sender, current_learning_rate, self._say)

    def _say(self, failure: str | None = None) -> None:
        """Say once that the tracking server stopped answering."""
        failure = failure or self._sender.failure
        if failure and not self._said:
            self._said = True
            self._view.note(
                f"MLflow: {self.run.tracking_uri} did not take the values ({failure}); "
                "training goes on without tracking"
            )

    @property
    def failed(self) -> bool:
        return self._said or self._sender.failure is not None

    def finish(
        self,
        run_dir: Path,
        history: dict[str, list[float]],
        evaluated_on: str,
        scores: dict[str, float],
        seconds: dict[str, float],
    ) -> None:
        """Log what the callback did not (epochs of an earlier process: the history is
        continuous), the scores (`<split>_<name>`) and times, the run's files; end FINISHED."""
        rows = len(history.get("loss", []))
        for step in range(1, rows + 1):
            if step not in self._sender.steps:
                values = {key: column[step - 1] for key, column in history.items()}
                self._sender.put({k: v for k, v in values.items() if not math.isnan(v)}, step)
        final = {f"{evaluated_on}_{name}": value for name, value in scores.items()}
        self._sender.put({**final, **seconds}, rows)
        self._sender.close(SEND_TIMEOUT)
        if self._sender.failure:
            self._say()
            return
        try:
            for name in ARTIFACTS:
                if (run_dir / name).is_file():
                    self._client.log_artifact(self.run.run_id, str(run_dir / name))
            self._client.set_terminated(self.run.run_id, "FINISHED")
        except Exception as error:
            self._say(one_line(error))

    def end(self, status: str) -> None:
        """End the run KILLED or FAILED (values queued until now are sent first)."""
        self._sender.close(SEND_TIMEOUT / 4)
        if self.failed:
            return
        try:
            self._client.set_terminated(self.run.run_id, status)
        except Exception as error:
            self._say(one_line(error))


@contextmanager
def tracked(
    request: TrackRequest | None,
    recorded: MlflowRun | None,
    run_dir: Path,
    spec_data: dict[str, Any],
    facts: dict[str, str],
    view: Notes,
) -> Iterator[Tracker | None]:
    """The MLflow run of a training run while the block trains it.

    Args:
        request: where to track a new run (None: not tracked, unless `recorded`).
        recorded: the MLflow run a resumed run folder's run.json names: continued, at its URI.
        run_dir: the run folder; its name is the MLflow run's name.
        spec_data: the resolved spec (logged as params at its `--set` key paths).
        facts: more params: the dataset's digest and split sizes, versions, device.
        view: where the one line about an unreachable server goes.

    Yields:
        The Tracker (None when not tracked, or the server could not be reached: said once);
        the block calls its `finish`. An exception ends the run KILLED (Interrupted,
        KeyboardInterrupt) or FAILED, and goes on.

    Example:
        with tracked(request, None, run_dir, spec.model_dump(mode="json"), facts, view) as t:
            ...
    """
    tracker = _start(request, recorded, run_dir, spec_data, facts, view)
    if tracker is None:
        yield None
        return
    try:
        yield tracker
    except (Interrupted, KeyboardInterrupt):
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise


def _start(
    request: TrackRequest | None,
    recorded: MlflowRun | None,
    run_dir: Path,
    spec_data: dict[str, Any],
    facts: dict[str, str],
    view: Notes,
) -> Tracker | None:
    from dlcli.runs.record import record_tracking

    uri = recorded.tracking_uri if recorded else request.uri if request else None
    if uri is None:
        return None
    try:
        if recorded is not None:
            client, logged = continue_run(recorded)
            return Tracker(client, recorded, view, logged)
        assert request is not None
        client, run = open_run(
            request.uri,
            request.experiment,
            run_dir.name,
            tags={"dlcli.run_dir": str(run_dir.resolve()), **request.tags},
            artifacts=local_artifacts(request.uri),
        )
        params, cut = truncated({**flatten(spec_data), **facts})
        log_params(client, run.run_id, params)
        if cut:
            client.set_tag(run.run_id, "dlcli.truncated_params", ", ".join(cut))
            view.note(f"MLflow: {', '.join(cut)} cut to MLflow's 6000 characters")
    except Exception as error:  # the server is down or refuses: train without it
        view.note(
            f"MLflow: {uri} could not be reached ({one_line(error)}); training goes on "
            "without tracking"
        )
        return None
    record_tracking(run_dir, run.to_dict())
    return Tracker(client, run, view, set())
