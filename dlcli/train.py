"""Seed, build, compile, fit, evaluate on the test split, and write the run directory."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dlcli import __version__
from dlcli.artifact import FORMAT_VERSION, ModelInfo
from dlcli.checks import add_channel_axis, check_against_model, task_of
from dlcli.data import Splits, check_files, load_dataset
from dlcli.errors import (
    ConfigError,
    DlcliError,
    Interrupted,
    NonFiniteLossError,
    OutOfMemoryError,
    OutputError,
    TrainingError,
    UsageError,
)
from dlcli.evaluate import confusion_matrix, score
from dlcli.spec import Spec, format_path

BACKUP_DIR = "backup"
_WRITE_ERRORS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EFBIG}
RUN_RECORD = "run.json"  # what --resume needs besides spec.yaml: the spec's folder


class ProgressView(Protocol):
    """What training reports as it goes (rendered by dlcli.report)."""

    def start(self, device: str, splits: Splits, run_dir: Path) -> None: ...
    def note(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, logs: dict[str, float]) -> None: ...
    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_path: Path
    task: str
    test_metrics: dict[str, float]
    evaluated_on: str
    history: dict[str, list[float]]
    fit_seconds: float
    total_seconds: float
    device: str
    stopped_early: str | None = None  # what ended training before `fit.epochs`, and what it kept


def output_folder(spec: Spec) -> Path:
    """The folder runs go to (`output.dir`, relative to the current folder), created and
    checked writable before anything slow happens."""
    output_dir = Path(spec.output.dir)
    output_dir = output_dir if output_dir.is_absolute() else Path.cwd() / output_dir
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {output_dir}: {error.strerror}") from error
    if not os.access(output_dir, os.W_OK):
        raise OutputError(f"cannot write to {output_dir}: permission denied")
    return output_dir


def new_run_dir(output_dir: Path, name: str) -> Path:
    """Create `output_dir/<name>-<n>` atomically with the next free n; earlier runs untouched."""
    taken = [p.name.removeprefix(f"{name}-") for p in output_dir.glob(f"{name}-*")]
    number = max((int(n) for n in taken if n.isdigit()), default=0) + 1
    while True:
        run_dir = output_dir / f"{name}-{number}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            number += 1
        except OSError as error:
            raise OutputError(f"cannot create {run_dir}: {error.strerror}") from error


@contextmanager
def _kept_only_if_resumable(run_dir: Path, resuming: bool) -> Iterator[None]:
    """A new run that fails before it holds a backup to resume (or a model) leaves no folder."""
    try:
        yield
    except BaseException:
        if not resuming and not _resumable(run_dir) and not (run_dir / "model.keras").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _resumable(run_dir: Path) -> bool:
    return (run_dir / BACKUP_DIR / "training_metadata.json").exists()


def _steps_per_execution(spec: Spec, examples: int) -> int:
    """Several steps per call into TensorFlow: Python runs once per execution, not per batch.

    "auto" takes up to a fifth of the epoch's steps, at most 128 (progress, Ctrl-C and a NaN
    loss are handled between executions): the largest divisor of the full batches there when
    it is at least a quarter of that, so that the last execution is only the partial batch and
    its program traces one step, not two (see `_training_data`).
    """
    if spec.compile.steps_per_execution != "auto":
        return int(spec.compile.steps_per_execution)
    full, steps = examples // spec.fit.batch_size, math.ceil(examples / spec.fit.batch_size)
    limit = max(1, min(steps // 5, 128))
    divisor = max(d for d in range(1, limit + 1) if full % d == 0)
    return divisor if 4 * divisor >= limit else limit


def _cpu_identity() -> str:
    """The CPU model and its instruction set flags: compiled code depends on both."""
    import platform

    identity = [platform.machine(), platform.processor()]
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.partition(":")[0].strip()
            if key in ("model name", "flags", "Features", "CPU part") and line not in identity:
                identity.append(line)
    return "\n".join(identity)


# Device files of GPUs that TensorFlow could use (NVIDIA, WSL, ROCm).
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")
_KEPT_PROGRAMS = 200


def _keep_compiled_programs() -> None:
    """On CPU-only machines, let TensorFlow keep XLA's compiled programs for the next run.

    Compiling the MNIST MLP's train step takes ~1.3 s per batch shape on the 2-core machine;
    loading it back takes milliseconds. Programs are keyed by their HLO, so another model or
    batch size compiles anew; the folder is per TensorFlow version and CPU, since the code is
    compiled for both (GPU code also depends on the GPU: no cache where one may be). The flag
    is read when TensorFlow first sets up its devices, so this runs before anything else.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" in flags or any(map(os.path.exists, _GPU_DEVICE_FILES)):
        return
    import tensorflow as tf

    from dlcli.data import cache_dir

    machine = hashlib.sha256(_cpu_identity().encode()).hexdigest()[:12]
    folder = cache_dir() / "xla" / f"tensorflow-{tf.__version__}-cpu-{machine}"
    if any(character.isspace() for character in str(folder)):
        return  # TF_XLA_FLAGS is split at spaces, and TensorFlow aborts on what it can't parse
    with suppress(OSError):  # keep the newest programs (~200 KB each)
        programs = sorted(folder.glob("*.pb"), key=lambda path: path.stat().st_mtime)
        for program in programs[:-_KEPT_PROGRAMS]:
            program.unlink()
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()


# Above this size the training data goes to Keras's own adapter, which holds no shuffled copy.
_SHUFFLED_COPY_MAX_BYTES = 512 * 1024 * 1024


# The compiled executions replace `model.train_function` and rely on its contract in Keras's
# TensorFlow trainer (called once per execution with an iterator; `train_step` and
# `get_metrics_result` as in 3.15). Other versions train with Keras's own loop.
FUSED_LOOP_KERAS = "3.15."


def fused_loop_tested(keras_version: str) -> bool:
    """Whether the compiled executions were tested with this Keras version.

    Example:
        >>> fused_loop_tested("3.15.1"), fused_loop_tested("3.16.0")
        (True, False)
    """
    return keras_version.startswith(FUSED_LOOP_KERAS)


def _training_data(
    model: Any, x: Any, y: Any, batch_size: int, shuffle: bool, *, replicas: int, fused: bool = True
) -> dict[str, Any]:
    """`fit`'s data arguments; on one device, each execution runs as one compiled program.

    Keras's TensorFlow trainer runs an execution as a loop of compiled steps, one XLA program
    launched and one batch fetched per step: the MNIST MLP's epochs took 1.98 s that way against
    1.50 s here (medians of 10 alternating epochs on the 2-core machine). Here the data comes as
    executions (see `_executions`), and `model.train_function`, which `fit` calls once per
    execution, runs Keras's own `train_step` over all of its batches in one program. Keras still
    counts the steps, calls the callbacks and validates as it does with `steps_per_execution`.

    Several replicas, data that is not plain arrays, too much of it for a shuffled copy, or not
    `fused` (a Keras version the executions were not tested with): Keras's own adapter and loop.
    """
    fits = isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    too_large = fits and x.nbytes + y.nbytes > _SHUFFLED_COPY_MAX_BYTES
    if not fused or replicas > 1 or not fits or len(x) == 0 or too_large:
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": shuffle}
    import tensorflow as tf

    step = model.train_step

    @tf.function(jit_compile=model.jit_compile, autograph=False)  # as Keras's own step
    def execution(xs: Any, ys: Any, x_rest: Any, y_rest: Any) -> Any:
        def one_step(index: Any) -> Any:
            step((xs[index], ys[index]))
            return index + 1

        if xs.shape[0]:  # shapes are known: each is traced on its own
            tf.while_loop(lambda i: i < xs.shape[0], one_step, [0], parallel_iterations=1)
        if x_rest.shape[0]:
            step((x_rest, y_rest))
        return model.get_metrics_result()  # what `train_step` returns, after the last step

    model.train_function = lambda iterator: execution(*next(iterator))
    dataset = _executions(x, y, batch_size, shuffle, model.steps_per_execution)
    return {"x": dataset, "steps_per_epoch": math.ceil(len(x) / batch_size), "shuffle": False}


def _executions(x: Any, y: Any, batch_size: int, shuffle: bool, per_execution: int) -> Any:
    """The training data as a tf.data pipeline of executions, all epochs through one iterator.

    An execution is `per_execution` full batches stacked, shape (steps, batch, ...), and the
    partial batch that ends the epoch (empty but in the last execution): the batches Keras
    makes, full ones then the rest. Each epoch is one gather of the arrays in a new order
    (Keras's adapter repeats the first order every epoch once a seed is set), gathered while the
    previous epoch trains. Pixels stay uint8, 4x less to copy than float32; the model converts
    them.
    """
    import tensorflow as tf

    count = len(x)
    full = count // batch_size
    executions = math.ceil(math.ceil(count / batch_size) / per_execution)
    stacked = (executions - 1) * per_execution  # the full batches of all executions but the last
    # The epoch number lives outside the iterator.
    with tf.device("/cpu:0"):
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    base_seed = tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)  # from the run's seed

    def all_but_last(array: Any) -> Any:  # (executions - 1, per_execution, batch, ...)
        shape = (executions - 1, per_execution, batch_size, *array.shape[1:])
        return tf.reshape(array[: stacked * batch_size], shape)

    def last(array: Any) -> Any:  # the last execution's full batches: (full - stacked, batch, ...)
        shape = (full - stacked, batch_size, *array.shape[1:])
        return tf.reshape(array[stacked * batch_size : full * batch_size], shape)

    @tf.autograph.experimental.do_not_convert  # plain Python: AutoGraph took ~0.3 s to convert it
    def one_epoch(x: Any, y: Any) -> Any:
        if shuffle:
            seed = tf.stack([base_seed, epoch.assign_add(1)])
            order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
            x, y = tf.gather(x, order), tf.gather(y, order)
        no_rest = [tf.zeros((executions - 1, 0, *a.shape[1:]), a.dtype) for a in (x, y)]
        return tf.data.Dataset.from_tensor_slices(
            (all_but_last(x), all_but_last(y), *no_rest)
        ).concatenate(
            tf.data.Dataset.from_tensors(
                (last(x), last(y), x[full * batch_size :], y[full * batch_size :])
            )
        )

    options = tf.data.Options()
    # As in Keras's adapter: no graph rewrites, which would serialize the arrays.
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    # Nothing to tune (no parallel maps, a fixed prefetch); with autotuning on, `fit` took 3-9 s
    # to return after its last epoch on the 2-core machine.
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat().flat_map(one_epoch)
    return dataset.prefetch(1).with_options(options)


class _Stop(Exception):
    """Raised from a callback at a batch boundary to leave `fit` before the epoch ends.

    Leaving by an exception skips `on_epoch_end`, so the backup keeps the last completed epoch
    and no half-trained or NaN weights are written anywhere.
    """

    def __init__(self, epoch: int, batch: int, *, signal_number: int = 0, loss: float = 0.0):
        super().__init__()
        self.epoch, self.batch, self.signal_number, self.loss = epoch, batch, signal_number, loss


def _progress_callback(view: ProgressView, epochs: int, steps: int) -> Any:
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
                raise _Stop(self.epoch, done, signal_number=self.signal_number)
            if not math.isfinite(logs.get("loss", 0.0)):
                raise _Stop(self.epoch, done, loss=logs["loss"])
            view.advance(done, logs)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            view.end_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    return Progress()


@contextmanager
def _signals_stop(progress: Any) -> Iterator[None]:
    """SIGINT and SIGTERM ask the progress callback to stop; a second signal acts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def request_stop(number: int, frame: Any) -> None:
        progress.signal_number = number
        for restored, handler in previous.items():
            signal.signal(restored, handler)

    for number in previous:
        signal.signal(number, request_stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _read_history(path: Path) -> dict[str, list[float]]:
    """history.csv (continuous across resumes) as columns; Keras writes NA for missing values."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [key for key in (rows[0] if rows else {}) if key != "epoch"]
    return {
        key: [float(row[key]) for row in rows]
        for key in columns
        if all(row[key] not in ("", "NA") for row in rows)
    }


def metadata(spec: Spec, splits: Splits, task: str, model: Any, extra: dict[str, Any]) -> ModelInfo:
    """The dlcli.json embedded in model.keras (`extra` holds its `metrics` and `training`)."""
    import keras
    import tensorflow as tf

    info = splits.info
    image = info.image
    dataset = {"source": info.source, "digest": info.digest, "sizes": info.sizes}
    return ModelInfo.model_validate({
        "format": FORMAT_VERSION,
        "versions": {
            "dlcli": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
        "spec": spec,
        "dataset": {**dataset, "skipped": info.skipped},
        "task": task,
        "class_names": info.class_names,
        "input": {
            "shape": list(splits.train.x.shape[1:]),
            "dtype": str(splits.train.x.dtype),
            "feature_names": info.feature_names,
            "image": None if image is None else image.__dict__,
        },
        **extra,
    })  # fmt: skip


def _backup_epoch(backup: Path) -> int | None:
    """The epochs a backup holds (Keras's training_metadata.json), None when there is none."""
    try:
        return int(json.loads((backup / "training_metadata.json").read_text())["epoch"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingError(
            f"the backup in {backup} cannot be restored (training_metadata.json: {error}); "
            f"start the run over with: dlcli train --resume {_shell_path(backup.parent)} --restart"
        ) from error


def _backup_note(run_dir: Path) -> str:
    backup = run_dir / BACKUP_DIR
    epoch = _backup_epoch(backup)
    if epoch is None:
        return "no epoch had completed, so there is no backup"
    return f"the backup of epoch {epoch} is in {backup}"


def _check_backup(backup: Path) -> None:
    """Weights without their epoch count would silently start over at epoch 1: refuse."""
    if (backup / "latest.weights.h5").exists() and _backup_epoch(backup) is None:
        raise TrainingError(
            f"the backup in {backup} cannot be restored (training_metadata.json is missing); "
            f"start the run over with: dlcli train --resume {_shell_path(backup.parent)} --restart"
        )


def _trim_history(path: Path, epochs: int) -> None:
    """Keep the header and the first `epochs` rows: the epochs the restored backup holds."""
    if not path.is_file():
        return
    from dlcli.artifact import atomic_write

    lines = path.read_bytes().splitlines(keepends=True)
    if len(lines) > epochs + 1:
        atomic_write(path, b"".join(lines[: epochs + 1]))


def _history_logger(path: Path, *, append: bool) -> Any:
    """Keras's CSVLogger, with epochs numbered from 1 as the progress table and curves are."""
    import keras

    class HistoryLogger(keras.callbacks.CSVLogger):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch + 1, logs)

    return HistoryLogger(str(path), append=append)


def _early_stop_note(callbacks: list[Any], model: Any, epochs_run: int, epochs: int) -> str | None:
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


def _restored_callback(run_dir: Path) -> Any:
    import keras

    class Restored(keras.callbacks.Callback):
        """Runs right after BackupAndRestore: the history is cut to the restored epoch, so that
        an epoch redone after a fallback to the previous backup is not logged twice."""

        done = False

        def on_train_begin(self, logs: dict | None = None) -> None:
            _trim_history(run_dir / "history.csv", _backup_epoch(run_dir / BACKUP_DIR) or 0)
            self.done = True

    return Restored()


def _stopped(stop: _Stop, run_dir: Path, *, new_run: bool) -> DlcliError:
    """The error for leaving fit early: interrupted (resumable) or a NaN/Inf loss.

    A new run stopped before its first backup keeps no folder (`_kept_only_if_resumable`).
    """
    kept = _backup_note(run_dir)
    if stop.signal_number:
        name = signal.Signals(stop.signal_number).name
        if new_run and not _resumable(run_dir):
            return Interrupted(
                f"{name} in epoch {stop.epoch}, batch {stop.batch}: stopped before the first "
                f"epoch ended, so there is nothing to resume and {_shell_path(run_dir)} was "
                "removed",
                128 + stop.signal_number,
            )
        return Interrupted(
            f"{name} in epoch {stop.epoch}, batch {stop.batch}: stopped; {kept}. "
            f"Resume with: dlcli train --resume {_shell_path(run_dir)}",
            128 + stop.signal_number,
        )
    return NonFiniteLossError(
        f"the loss became {stop.loss} in epoch {stop.epoch} by batch {stop.batch}; training "
        f"stopped and no model was saved ({kept}); lower the learning rate or check the data "
        "for extreme values"
    )


def _failed(error: Exception, spec: Spec, run_dir: Path, *, restored: bool) -> Exception:
    """Name the errors a user can act on; anything else stays a bug with its traceback.

    `restored` tells a failure to read the backup (before training) from one while training.
    """
    import tensorflow as tf

    if isinstance(error, tf.errors.ResourceExhaustedError):
        smaller = max(1, spec.fit.batch_size // 2)
        return OutOfMemoryError(
            f"out of memory with batch_size {spec.fit.batch_size}: train again with a smaller "
            f"`fit.batch_size`, e.g. --set fit.batch_size={smaller}; {_backup_note(run_dir)}"
        )
    if restored and isinstance(error, OSError) and error.errno in _WRITE_ERRORS:
        return OutputError(
            f"cannot write {error.filename or run_dir / BACKUP_DIR}: {error.strerror}; "
            f"{_backup_note(run_dir)}"
        )
    if (
        not restored
        and (run_dir / BACKUP_DIR).is_dir()
        and isinstance(error, OSError | ValueError | KeyError)
    ):
        return TrainingError(
            f"the backup in {run_dir / BACKUP_DIR} cannot be restored ({error}); "
            f"start the run over with: dlcli train --resume {_shell_path(run_dir)} --restart"
        )
    return error


def _first_difference(old: Any, new: Any, path: tuple = ()) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), (*path, key))
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found = _first_difference(a, b, (*path, index))
            if found:
                return found
        return ""
    return "" if old == new else f"{format_path(path)}: {old!r} -> {new!r}"


def _run_record(path: Path) -> dict[str, Any]:
    """run.json, checked: a damaged one cannot say where the spec and its data were."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if not isinstance(record.get("spec_dir"), str):
            raise ValueError("`spec_dir` is missing")
        if not isinstance(record.get("spec_file"), str | None):
            raise ValueError("`spec_file` is not a path")
        overrides = record.get("overrides", [])
        if not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
            raise ValueError("`overrides` is not a list of KEY=VALUE strings")
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise TrainingError(
            f"--resume {path.parent}: {path.name} is damaged ({error}); this run cannot be "
            "resumed, train again with: dlcli train SPEC"
        ) from error
    return {"spec_dir": record["spec_dir"], "spec_file": record.get("spec_file"),
            "overrides": overrides}  # fmt: skip


def prepare_resume(run_dir: Path, *, restart: bool = False) -> tuple[Spec, Path]:
    """The spec and spec folder to continue `run_dir` with.

    The run's own spec.yaml is the spec. If the spec file it came from has changed since, resuming
    is refused (the backup belongs to the old spec) unless `restart`, which starts the run over
    with the file as it is now. A finished run is not resumed.
    """
    from dlcli.spec import load_spec

    record_path = run_dir / RUN_RECORD
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: no such run directory")
    if not record_path.is_file() or not (run_dir / "spec.yaml").is_file():
        raise UsageError(f"--resume {run_dir}: not a dlcli run directory (no {RUN_RECORD})")
    if (run_dir / "model.keras").exists() and not restart:
        raise UsageError(
            f"--resume {run_dir}: this run finished (model.keras exists); nothing to resume"
        )
    record = _run_record(record_path)
    try:
        recorded = load_spec(run_dir / "spec.yaml")
    except ConfigError as error:
        raise TrainingError(
            f"--resume {run_dir}: its spec.yaml is damaged ({error}); this run cannot be "
            "resumed, train again with: dlcli train SPEC"
        ) from error
    spec_file = Path(record["spec_file"]) if record["spec_file"] else None
    spec = recorded
    if spec_file is not None and spec_file.is_file():
        current = load_spec(spec_file, record["overrides"])
        if current.seed is None:
            current = current.model_copy(update={"seed": recorded.seed})
        change = _first_difference(
            recorded.model_dump(mode="json"), current.model_dump(mode="json")
        )
        if change and not restart:
            raise ConfigError(
                f"--resume {run_dir}: {spec_file} changed since the run was interrupted "
                f"({change}); undo the change to resume, or add --restart to start the run over"
            )
        spec = current
    if restart:
        for leftover in (run_dir / BACKUP_DIR, run_dir / "history.csv", run_dir / "model.keras"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
    return spec, Path(record["spec_dir"])


def _shell_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return shlex.quote(str(path.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


def train(
    spec: Spec,
    spec_dir: Path,
    view: ProgressView,
    *,
    tensorboard: bool = False,
    run_dir: Path | None = None,
    spec_file: Path | None = None,
    overrides: Sequence[str] = (),
    skip_bad: bool = False,
) -> TrainResult:
    """Train the model a spec describes and write everything to a new run directory.

    With `run_dir` (see `prepare_resume`), training continues in that run from its backup.
    `spec_file` and `overrides` are recorded so that `--resume` can tell if the spec changed.
    `skip_bad` leaves out unreadable image files (counted) instead of refusing the dataset.
    """
    started = time.perf_counter()
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": random.SystemRandom().randrange(2**31)})
    assert spec.seed is not None
    resuming = run_dir is not None
    check_files(spec.dataset, spec_dir, spec_file)  # before TensorFlow loads (seconds)
    output_dir = None if resuming else output_folder(spec)
    from dlcli import artifact, report
    from dlcli.device import NeedsMainThread, import_tensorflow, select_device

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlcli-data") as reader:
        # The dataset is read while TensorFlow loads; a source that needs Keras (a download)
        # is read on this thread instead, once TensorFlow is loaded (see dlcli.device).
        reading = reader.submit(load_dataset, spec.dataset, spec_dir, spec.seed, skip_bad=skip_bad)
        import_tensorflow()
        _keep_compiled_programs()
        try:
            splits = reading.result()
        except NeedsMainThread:
            splits = load_dataset(spec.dataset, spec_dir, spec.seed, skip_bad=skip_bad)
    import keras

    from dlcli.model import (
        adapt_preprocessing,
        build_callbacks,
        build_model,
        compile_model,
        create_training_variables,
        load_plugins,
    )

    keras.utils.set_random_seed(spec.seed)
    device = select_device()
    load_plugins(spec.plugins)
    steps = math.ceil(len(splits.train) / spec.fit.batch_size)
    per_execution = _steps_per_execution(spec, len(splits.train))
    with device.strategy.scope():
        model = build_model(spec.model, spec.name, float32_outputs=device.mixed_precision)
        compile_model(model, spec, steps_per_execution=per_execution)
    splits = add_channel_axis(splits, model)
    task = task_of(spec.compile.loss, model)
    check_against_model(splits, model, spec.compile)
    adapt_preprocessing(model, spec.model, splits.train.x)
    if device.strategy.num_replicas_in_sync == 1:  # a strategy makes Keras create them itself
        create_training_variables(model, splits.train.x, splits.train.y)

    spec_callbacks = build_callbacks(spec)
    if run_dir is None:  # only now: a mistake found above leaves no run folder behind
        assert output_dir is not None
        run_dir = new_run_dir(output_dir, spec.name)
    with _kept_only_if_resumable(run_dir, resuming):
        artifact.atomic_write(run_dir / "spec.yaml", spec.to_yaml().encode())
        if not resuming:
            record = {
                "spec_dir": str(spec_dir.resolve()),
                "spec_file": str(spec_file.resolve()) if spec_file else None,
                "overrides": list(overrides),
            }
            artifact.write_json(run_dir / RUN_RECORD, record)
        view.start(device.description, splits, run_dir)
        fused = fused_loop_tested(keras.__version__)
        if not fused:
            view.note(
                f"Keras {keras.__version__} is outside the versions dlcli was tested with "
                f"({FUSED_LOOP_KERAS}x): training with Keras's own loop"
            )
        progress = _progress_callback(view, spec.fit.epochs, steps)
        backup_dir = run_dir / BACKUP_DIR
        _check_backup(backup_dir)
        restored = _restored_callback(run_dir)
        callbacks = [  # in this order: restore, cut the history to it, then log and train
            keras.callbacks.BackupAndRestore(
                str(backup_dir), double_checkpoint=True, delete_checkpoint=False
            ),
            restored,
            _history_logger(run_dir / "history.csv", append=resuming),
            progress,
            *spec_callbacks,
        ]
        if tensorboard or spec.output.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
        validation = splits.validation
        fit_started = time.perf_counter()
        try:
            with _signals_stop(progress):
                model.fit(
                    **_training_data(
                        model,
                        splits.train.x,
                        splits.train.y,
                        spec.fit.batch_size,
                        spec.fit.shuffle,
                        replicas=device.strategy.num_replicas_in_sync,
                        fused=fused,
                    ),
                    epochs=spec.fit.epochs,
                    validation_data=None if validation is None else (validation.x, validation.y),
                    validation_batch_size=spec.fit.batch_size,
                    callbacks=callbacks,
                    verbose=0,
                )
        except _Stop as stop:
            raise _stopped(stop, run_dir, new_run=not resuming) from None
        except Exception as error:
            raise _failed(error, spec, run_dir, restored=restored.done) from error
        finally:
            view.stop()
        fit_seconds = time.perf_counter() - fit_started
        classifier = task in ("multiclass", "binary")
        test_metrics, predicted = score(
            model, splits.test.x, splits.test.y, spec.fit.batch_size, outputs=classifier
        )
        evaluated_on = "train" if splits.test_is_train else "test"
        history_lists = _read_history(run_dir / "history.csv")
        total_seconds = time.perf_counter() - started
        epochs_run = len(history_lists.get("loss", []))
        stopped_early = _early_stop_note(spec_callbacks, model, epochs_run, spec.fit.epochs)
        training = {
            "epochs": epochs_run,
            **({"stopped_early": stopped_early} if stopped_early else {}),
            "fit_seconds": round(fit_seconds, 3),
            "total_seconds": round(total_seconds, 3),
            "device": device.description,
        }
        metrics = {"evaluated_on": evaluated_on, evaluated_on: test_metrics, **training}
        model_path = run_dir / "model.keras"
        extra = {"metrics": metrics, "training": training}
        artifact.save(model, metadata(spec, splits, task, model, extra), model_path)
        shutil.rmtree(backup_dir, ignore_errors=True)  # only now: the model is safely saved
        artifact.write_json(run_dir / "metrics.json", metrics)
        report.save_curves(history_lists, run_dir / "curves.png")
        if predicted is not None:
            matrix = confusion_matrix(splits.test.y, predicted, task)
            labels = splits.info.class_names or [str(i) for i in range(len(matrix))]
            report.save_confusion_matrix(matrix, labels, run_dir / "confusion_matrix.png")
        return TrainResult(
            run_dir, model_path, task, test_metrics, evaluated_on, history_lists,
            fit_seconds, time.perf_counter() - started, device.description, stopped_early,
        )  # fmt: skip
