"""Per-epoch values to MLflow without slowing the epoch loop.

A thread of its own holds the whole conversation with MLflow: it imports MLflow and opens the
run while training starts (TensorFlow and Keras are imported by then, on the main thread), then
sends whatever epochs have gathered in one `log_batch` call, and ends the run. The Keras
callback only copies each epoch's values (and the learning rate, when it changed) into its
queue. A tracking server that stops answering makes the thread stop: training goes on, and the
main thread says so once.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlcli.track.mlflow_run import MlflowRun, one_line

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
Opener = Callable[[], tuple[Any, MlflowRun, set[int]]]  # -> client, run, epochs logged already


@dataclass(frozen=True)
class _Epoch:
    step: int
    values: dict[str, float]
    stamp: int  # milliseconds


@dataclass(frozen=True)
class _End:
    status: str  # FINISHED, KILLED or FAILED
    history: dict[str, list[float]]  # FINISHED: every epoch, for those not logged yet
    final: dict[str, float]  # FINISHED: the scores and times, at the last epoch's step
    files: list[str]  # FINISHED: the run's files, as artifacts


class RunSender:
    """A thread that opens an MLflow run, logs queued epochs to it in batches, and ends it.

    Args:
        opener: called on the thread: opens (or continues) the run; returns the client, the
            run and the steps it has logged already (a resumed run's).

    Example:
        sender = RunSender(lambda: (client, run, set()))
        sender.put({"loss": 0.3}, step=1)
        sender.end("FINISHED", timeout=60, history={"loss": [0.3]}, final={}, files=[])
    """

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._queue: queue.SimpleQueue[_Epoch | _End] = queue.SimpleQueue()
        self.run: MlflowRun | None = None  # once opened
        self.failure: str | None = None  # why MLflow stopped taking values (or never did)
        self._logged: set[int] = set()
        self._thread = threading.Thread(target=self._work, name="dlcli-mlflow", daemon=True)
        self._thread.start()

    def put(self, values: dict[str, float], step: int) -> None:
        """Queue one epoch's values (returns at once)."""
        self._queue.put(_Epoch(step, values, int(time.time() * 1000)))

    def end(self, status: str, timeout: float, **finished: Any) -> None:
        """End the run with `status` once the queued values are sent (`finished`: the history,
        final values and files of a FINISHED run); wait at most `timeout` seconds."""
        self._queue.put(
            _End(
                status,
                finished.get("history", {}),
                finished.get("final", {}),
                finished.get("files", []),
            )
        )
        self._thread.join(timeout)
        if self._thread.is_alive() and self.failure is None:
            self.failure = f"it did not answer within {timeout:.0f} seconds"

    def _work(self) -> None:
        try:
            self._client, self.run, self._logged = self._opener()
        except Exception as error:  # not installed right, unreachable, refused
            self.failure = one_line(error)
        while True:
            items = [self._queue.get()]
            while not isinstance(items[-1], _End):  # gather what else has been queued
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            epochs = [item for item in items if isinstance(item, _Epoch)]
            ending = items[-1] if isinstance(items[-1], _End) else None
            if self.failure is None:
                try:
                    self._send(epochs)
                    if ending is not None:
                        self._end(ending)
                except Exception as error:  # the server is down, refuses, or times out
                    self.failure = one_line(error)
            if ending is not None:
                return

    def _send(self, epochs: list[_Epoch], *, again: bool = False) -> None:
        """Log the epochs' values; an epoch logged already (before a resume) is left out unless
        `again` (the final values, logged at the last epoch's step)."""
        from mlflow.entities import Metric

        metrics = [
            Metric(key, value, epoch.stamp, epoch.step)
            for epoch in epochs
            if again or epoch.step not in self._logged
            for key, value in epoch.values.items()
        ]
        self._logged |= {epoch.step for epoch in epochs}
        assert self.run is not None
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            chunk = metrics[start : start + MAX_METRICS_PER_BATCH]
            self._client.log_batch(self.run.run_id, metrics=chunk, synchronous=True)

    def _end(self, end: _End) -> None:
        assert self.run is not None
        if end.status == "FINISHED":
            rows = len(end.history.get("loss", []))
            stamp = int(time.time() * 1000)
            missing = [  # epochs of an earlier process that it had not sent: none is lost
                _Epoch(step, _row(end.history, step), stamp)
                for step in range(1, rows + 1)
                if step not in self._logged
            ]
            self._send(missing)
            self._send([_Epoch(max(rows, 1), end.final, stamp)], again=True)
            for path in end.files:
                self._client.log_artifact(self.run.run_id, path)
        self._client.set_terminated(self.run.run_id, end.status)


def _row(history: dict[str, list[float]], step: int) -> dict[str, float]:
    values = {name: column[step - 1] for name, column in history.items()}
    return {name: value for name, value in values.items() if not math.isnan(value)}


def epoch_callback(
    sender: RunSender, learning_rate: Callable[[Any], float | None], say: Callable[[], None]
) -> Any:
    """A Keras callback that queues each epoch's values (`step` = the epoch, from 1) and the
    learning rate when it changed; `say` is called after each epoch (to report a failure)."""
    import keras

    class MlflowEpochs(keras.callbacks.Callback):
        last_rate: float | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            values = {key: float(value) for key, value in (logs or {}).items()}
            rate = learning_rate(self.model)
            if rate is not None and rate != self.last_rate:
                values["learning_rate"] = self.last_rate = rate
            sender.put(values, epoch + 1)
            say()

    return MlflowEpochs()


def current_learning_rate(model: Any) -> float | None:
    """The optimizer's learning rate now (a schedule's value at the current step)."""
    optimizer = getattr(model, "optimizer", None)
    try:
        return float(optimizer.learning_rate.numpy())  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return None
