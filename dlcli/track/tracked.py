"""A training run mirrored to an MLflow run, from its start to its end.

`tracked()` wraps fit and finish (dlcli.train.pipeline): it has the MLflow run opened (or the
one run.json names continued, for `--resume`) with its params, off the main thread
(dlcli.track.callback), hands fit a callback for the per-epoch values, and ends the run
FINISHED (`Tracker.finish`: test metrics, times, files), KILLED (Ctrl-C, SIGTERM) or FAILED.
A tracking server that cannot be reached is said once on the progress view; training and the
run folder never depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from dlcli.errors import Interrupted
from dlcli.track.callback import RunSender, current_learning_rate, epoch_callback
from dlcli.track.mlflow_run import (
    MlflowRun,
    continue_run,
    flatten,
    local_artifacts,
    log_params,
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
    """One training run's MLflow run: its per-epoch callback, its end, the one line said when
    MLflow failed."""

    def __init__(self, sender: RunSender, uri: str, view: Notes) -> None:
        self.uri = uri
        self._sender, self._view = sender, view
        self._said = False
        self.callback = epoch_callback(sender, current_learning_rate, self._say)

    @property
    def run(self) -> MlflowRun | None:
        """The MLflow run, None while it is being opened or when it could not be."""
        return None if self._sender.failure else self._sender.run

    def _say(self) -> None:
        """Say once that MLflow stopped taking the run's values."""
        failure = self._sender.failure
        if failure and not self._said:
            self._said = True
            self._view.note(
                f"MLflow: {self.uri} did not take the values ({failure}); training goes on "
                "without tracking"
            )

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
        final = {f"{evaluated_on}_{name}": value for name, value in scores.items()}
        files = [str(run_dir / name) for name in ARTIFACTS if (run_dir / name).is_file()]
        self._sender.end(
            "FINISHED", SEND_TIMEOUT, history=history, final={**final, **seconds}, files=files
        )
        self._say()

    def end(self, status: str) -> None:
        """End the run KILLED or FAILED (values queued until now are sent first)."""
        self._sender.end(status, SEND_TIMEOUT / 4)
        self._say()


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
        view: where the one line about MLflow failing goes.

    Yields:
        The Tracker (None when not tracked); the block calls its `finish`. An exception ends
        the run KILLED (Interrupted, KeyboardInterrupt) or FAILED, and goes on.

    Example:
        with tracked(request, None, run_dir, spec.model_dump(mode="json"), facts, view) as t:
            ...
    """
    uri = recorded.tracking_uri if recorded else request.uri if request else None
    if uri is None:
        yield None
        return
    if recorded is not None:
        opener = partial(_continued, recorded)
    else:
        assert request is not None
        opener = partial(_opened, request, run_dir, spec_data, facts)
    tracker = Tracker(RunSender(opener), uri, view)
    try:
        yield tracker
    except (Interrupted, KeyboardInterrupt):
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise


def _continued(recorded: MlflowRun) -> tuple[Any, MlflowRun, set[int]]:
    client, logged = continue_run(recorded)
    return client, recorded, logged


def _opened(
    request: TrackRequest, run_dir: Path, spec_data: dict[str, Any], facts: dict[str, str]
) -> tuple[Any, MlflowRun, set[int]]:
    """A new MLflow run with its params and tags, recorded in run.json (on the sender's
    thread)."""
    from dlcli.runs.record import record_tracking

    client, run = open_run(
        request.uri,
        request.experiment,
        run_dir.name,
        tags={"dlcli.run_dir": str(run_dir.resolve()), **request.tags},
        artifacts=local_artifacts(request.uri),
    )
    record_tracking(run_dir, run.to_dict())
    params, cut = truncated({**flatten(spec_data), **facts})
    log_params(client, run.run_id, params)
    if cut:  # said where a user looks for the values
        client.set_tag(run.run_id, "dlcli.truncated_params", ", ".join(cut))
    return client, run, set()
