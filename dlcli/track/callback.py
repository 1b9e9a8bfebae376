"""Per-epoch values to MLflow without slowing the epoch loop.

The Keras callback only copies each epoch's values (and the learning rate, when it changed)
into a queue; a thread of its own sends what has gathered in one `log_batch` call. A tracking
server that stops answering makes the thread stop sending: training goes on, and the callback
says so once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from dlcli.track.mlflow_run import one_line

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
_STOP = None


class MetricsSender:
    """A thread that logs queued metrics to one MLflow run, in batches.

    Args:
        tracker: an `MlflowClient`.
        run_id: the run the metrics go to.

    Example:
        sender = MetricsSender(tracker, run.run_id)
        sender.put({"loss": 0.3}, step=1)
        sender.close(timeout=30)
    """

    def __init__(self, tracker: Any, run_id: str) -> None:
        from mlflow.entities import Metric  # on the caller's (main) thread

        self._metric = Metric
        self._tracker, self._run_id = tracker, run_id
        self._queue: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self.failure: str | None = None  # why the tracking server stopped taking values
        self.steps: set[int] = set()  # the steps queued (sent, unless `failure`)
        self._thread = threading.Thread(target=self._send, name="dlcli-mlflow", daemon=True)
        self._thread.start()

    def put(self, values: dict[str, float], step: int) -> None:
        """Queue one step's values (returns at once)."""
        stamp = int(time.time() * 1000)
        self.steps.add(step)
        self._queue.put([self._metric(key, value, stamp, step) for key, value in values.items()])

    def close(self, timeout: float) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive() and self.failure is None:
            self.failure = f"the queued values were not sent within {timeout:.0f} seconds"

    def _send(self) -> None:
        stopping = False
        while not stopping:
            batch = self._queue.get()
            if batch is _STOP:
                return
            while True:  # gather what else has been queued meanwhile
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.extend(more)
            if self.failure is not None:
                continue  # the server failed once: nothing more is sent
            try:
                for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
                    chunk = batch[start : start + MAX_METRICS_PER_BATCH]
                    self._tracker.log_batch(self._run_id, metrics=chunk, synchronous=True)
            except Exception as error:  # the server is down, refuses, or times out
                self.failure = one_line(error)


def epoch_callback(
    sender: MetricsSender, learning_rate: Callable[[Any], float | None], say: Callable[[], None]
) -> Any:
    """A Keras callback that queues each epoch's values (`step` = the epoch, from 1) and the
    learning rate when it changed; `say` is called after each epoch (to report a failure)."""
    import keras

    class MlflowEpochs(keras.callbacks.Callback):
        last_rate: float | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            step = epoch + 1
            if step in sender.steps:  # logged before the run was resumed
                return
            values = {key: float(value) for key, value in (logs or {}).items()}
            rate = learning_rate(self.model)
            if rate is not None and rate != self.last_rate:
                values["learning_rate"] = self.last_rate = rate
            sender.put(values, step)
            say()

    return MlflowEpochs()


def current_learning_rate(model: Any) -> float | None:
    """The optimizer's learning rate now (a schedule's value at the current step)."""
    optimizer = getattr(model, "optimizer", None)
    try:
        return float(optimizer.learning_rate.numpy())  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError):
        return None
