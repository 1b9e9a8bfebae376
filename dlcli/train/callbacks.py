"""What happens during `fit` besides the steps: progress, Ctrl-C and SIGTERM, a NaN loss,
early stops, and the one-line errors a stopped or failed fit ends in."""

from __future__ import annotations

import errno
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlcli.errors import DlcliError, Interrupted, NonFiniteLossError, OutOfMemoryError, OutputError
from dlcli.runs.record import resumable, resume_command, shell_path
from dlcli.spec.schema import KerasObject, Spec
from dlcli.train import backup

if TYPE_CHECKING:
    from dlcli.train.pipeline import ProgressView

_WRITE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class Monitor:
    """The score a run is judged by, and whether lower or higher is better."""

    name: str
    mode: Literal["min", "max"]


def monitored(callbacks: list[KerasObject], validated: bool) -> Monitor:
    """What the spec's own callbacks watch (EarlyStopping, ModelCheckpoint, ...: the first with
    a `monitor`), else `val_loss`, or `loss` without validation data.

    A callback's `mode: auto` follows Keras's rule: higher is better for accuracy, AUC and
    other scores whose name says so, lower for losses and errors.

    Example:
        >>> from dlcli.spec.schema import KerasObject
        >>> stop = KerasObject.model_validate({"EarlyStopping": {"monitor": "val_accuracy"}})
        >>> monitored([stop], True)
        Monitor(name='val_accuracy', mode='max')
        >>> monitored([], False)
        Monitor(name='loss', mode='min')
    """
    for callback in callbacks:
        name = callback.config.get("monitor")
        if isinstance(name, str):
            mode = callback.config.get("mode", "auto")
            if mode not in ("min", "max"):
                higher = any(word in name for word in ("acc", "auc", "precision", "recall", "f1"))
                mode = "max" if higher else "min"
            return Monitor(name, mode)
    return Monitor("val_loss" if validated else "loss", "min")


class Stop(Exception):
    """Raised from a callback at a batch boundary to leave `fit` before the epoch ends.

    Leaving by an exception skips `on_epoch_end`, so the backup keeps the last completed epoch
    and no half-trained or NaN weights are written anywhere.
    """

    def __init__(self, epoch: int, batch: int, *, signal_number: int = 0, loss: float = 0.0):
        super().__init__()
        self.epoch, self.batch, self.signal_number, self.loss = epoch, batch, signal_number, loss


def progress_callback(view: ProgressView, epochs: int, steps: int) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        """Feeds the view; stops at the next batch boundary on a signal or a NaN/Inf loss."""

        signal_number = 0
        epoch = 1

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch + 1
            view.start_epoch(epoch + 1, epochs, steps)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            logs = {key: float(value) for key, value in (logs or {}).items()}
            done = min(batch + 1, steps)  # Keras counts a whole execution for the last one
            if self.signal_number:
                raise Stop(self.epoch, done, signal_number=self.signal_number)
            if not math.isfinite(logs.get("loss", 0.0)):
                raise Stop(self.epoch, done, loss=logs["loss"])
            view.advance(done, logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            shown = {k: float(v) for k, v in (logs or {}).items()}
            with suppress(AttributeError, TypeError, ValueError):  # the rate this epoch used
                shown["learning_rate"] = float(self.model.optimizer.learning_rate)
            view.end_epoch(epoch + 1, shown)

    return Progress()


class SignalLatch:
    """A SIGINT or SIGTERM remembered instead of raised, until a safe point asks for it (a
    KeyboardInterrupt raised at any line can land where Python drops it, in a weakref
    callback); a second signal acts at once."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, number: int, frame: Any) -> None:
        if self.number:
            raise KeyboardInterrupt
        self.number = number


_STOPPING = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _handled(handler_for: Callable[[dict[signal.Signals, Any]], Any]) -> Iterator[None]:
    """SIGINT and SIGTERM handled by `handler_for(the handlers they had)` while the block runs,
    then restored; on the main thread only (signals are delivered there). An ignored signal
    stays ignored, as for a script's background job."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in _STOPPING}
    handler = handler_for(previous)
    for number, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextmanager
def latched_signals() -> Iterator[SignalLatch]:
    """SIGINT and SIGTERM latched (`SignalLatch`) while the block runs, on the main thread;
    `signals_stop` inside it stops fit at once for a signal that came before fit began."""
    latch = SignalLatch()
    with _handled(lambda previous: latch):
        yield latch


@contextmanager
def signals_stop(progress: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask the progress callback to stop; a second signal acts at once.

    A signal latched before fit began (`latched_signals`) stops it at its first batch."""

    def handler_for(previous: dict[signal.Signals, Any]) -> Callable[[int, Any], None]:
        latched = [old.number for old in previous.values() if isinstance(old, SignalLatch)]
        if any(latched):
            progress.signal_number = max(latched)

        def request_stop(number: int, frame: Any) -> None:
            progress.signal_number = number
            for restored, old in previous.items():
                signal.signal(restored, old)

        return request_stop

    with _handled(handler_for):
        yield


def early_stop_note(callbacks: list[Any], model: Any, epochs_run: int, epochs: int) -> str | None:
    """What ended training before `epochs` (EarlyStopping, another callback) and which weights
    the model holds; None when it ran every epoch and kept the last weights."""
    import keras

    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.EarlyStopping):
            continue
        restored = callback.restore_best_weights and callback.best_weights is not None
        kept = f"weights of epoch {callback.best_epoch + 1} restored" if restored else ""
        if callback.stopped_epoch > 0:
            return (
                f"Stopped at epoch {callback.stopped_epoch + 1} of {epochs}: {callback.monitor} "
                f"did not improve for {callback.patience} epoch{'s' * (callback.patience != 1)}"
                + (f"; {kept}" if kept else "")
            )
        if restored and callback.best_epoch + 1 != epochs_run:
            return f"EarlyStopping: {kept} (the best {callback.monitor})"
    if model.stop_training and epochs_run < epochs:
        return f"Stopped at epoch {epochs_run} of {epochs} by a callback of the spec"
    return None


def weights_epoch(callbacks: list[Any], epochs_run: int) -> int:
    """The epoch whose weights the model holds after fit: the last one, or the best one that
    EarlyStopping restored (`restore_best_weights`)."""
    import keras

    for callback in callbacks:
        if (
            isinstance(callback, keras.callbacks.EarlyStopping)
            and callback.restore_best_weights
            and callback.best_weights is not None
        ):
            return int(callback.best_epoch) + 1
    return epochs_run


def stop_error(stop: Stop, run_dir: Path, *, new_run: bool) -> DlcliError:
    """The error for leaving fit early: interrupted (resumable) or a NaN/Inf loss.

    A new run stopped before its first backup keeps no folder (`kept_only_if_resumable`).
    """
    kept = backup.note(run_dir)
    if stop.signal_number:
        name = signal.Signals(stop.signal_number).name
        if new_run and not resumable(run_dir):
            return Interrupted(
                f"{name} in epoch {stop.epoch}, batch {stop.batch}: stopped before the first "
                f"epoch ended, so there is nothing to resume and {shell_path(run_dir)} was "
                "removed",
                128 + stop.signal_number,
            )
        return Interrupted(
            f"{name} in epoch {stop.epoch}, batch {stop.batch}: stopped; {kept}. "
            f"Resume with: {resume_command(run_dir)}",
            128 + stop.signal_number,
        )
    return NonFiniteLossError(
        f"the loss became {stop.loss} in epoch {stop.epoch} by batch {stop.batch}; training "
        f"stopped and no model was saved ({kept}); lower the learning rate or check the data "
        "for extreme values"
    )


def failure_error(error: Exception, spec: Spec, run_dir: Path) -> Exception:
    """Name the errors a user can act on; anything else stays a bug with its traceback."""
    import tensorflow as tf

    if isinstance(error, tf.errors.ResourceExhaustedError):
        smaller = max(1, spec.fit.batch_size // 2)
        return OutOfMemoryError(
            f"out of memory with batch_size {spec.fit.batch_size}: train again with a smaller "
            f"`fit.batch_size`, e.g. --set fit.batch_size={smaller}; {backup.note(run_dir)}"
        )
    if isinstance(error, OSError) and error.errno in _WRITE_ERRORS:  # TensorBoard's logs
        return OutputError(
            f"cannot write {error.filename or run_dir}: {error.strerror}; {backup.note(run_dir)}"
        )
    return error
