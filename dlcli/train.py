"""Seed, build, compile, fit, evaluate on the test split, and write the run directory."""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dlcli import __version__
from dlcli.data import Splits, check_finite, load_dataset
from dlcli.errors import DataError, NonFiniteLossError, OutputError
from dlcli.spec import Spec

PREDICT_BATCH_SIZE = 1024


class ProgressView(Protocol):
    """What training reports as it goes (rendered by dlcli.report)."""

    def start(self, device: str, splits: Splits, run_dir: Path) -> None: ...
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


def task_of(loss: str, output_units: int) -> str:
    """multiclass, binary, multilabel or regression, from the loss and the output width."""
    loss = loss.lower()
    if "categorical" in loss:
        return "multiclass"
    if "binary" in loss or loss in ("bce", "hinge", "squared_hinge"):
        return "binary" if output_units == 1 else "multilabel"
    return "regression"


def new_run_dir(output_dir: Path, name: str) -> Path:
    """Create `output_dir/<name>-<n>` atomically with the next free n; earlier runs untouched."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {output_dir}: {error.strerror}") from error
    if not os.access(output_dir, os.W_OK):
        raise OutputError(f"cannot write to {output_dir}: permission denied")
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


def check_against_model(splits: Splits, model: Any, task: str) -> None:
    """Shapes agree with the model input, labels fit the loss, no NaN or Inf: before `fit`."""
    named = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    expected = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    units = model.output_shape[-1] if not isinstance(model.output_shape, list) else None
    for name, split in named.items():
        if split is None or (name == "test" and splits.test_is_train):
            continue
        if expected is not None:
            found = tuple(split.x.shape[1:])
            fits = len(found) == len(expected) and all(
                e is None or e == f for e, f in zip(expected, found, strict=True)
            )
            if not fits:
                raise DataError(
                    f"{name} data has examples of shape {found} but the model input is "
                    f"{expected}; change `model.input` to {list(found)} or reshape the data"
                )
        check_finite(f"{name} data", split.x)
        check_finite(f"{name} labels", split.y)
        if task == "multiclass" and units is not None:
            labels = split.y.reshape(len(split.y), -1)
            if labels.shape[1] == 1:
                bad = (labels[:, 0] < 0) | (labels[:, 0] >= units) | (labels[:, 0] % 1 != 0)
                if bad.any():
                    first = int(np.argmax(bad))
                    raise DataError(
                        f"{name} labels must be class indices 0..{units - 1} for a "
                        f"{units}-unit output; {int(bad.sum())} are not, the first is "
                        f"{split.y[first].item()!r} at index {first}"
                    )
        if task in ("binary", "multilabel"):
            bad = ((split.y < 0) | (split.y > 1)).reshape(len(split.y), -1).any(axis=1)
            if bad.any():
                first = int(np.argmax(bad))
                raise DataError(
                    f"{name} labels must be between 0 and 1 for {task} classification; "
                    f"{int(bad.sum())} are not, the first at index {first}"
                )


def _steps_per_execution(spec: Spec, steps_per_epoch: int) -> int:
    """About ten progress updates an epoch: Python runs once per execution, not per batch."""
    if spec.compile.steps_per_execution != "auto":
        return int(spec.compile.steps_per_execution)
    return max(1, min(steps_per_epoch // 10, 64))


def _progress_callback(view: ProgressView, epochs: int, steps: int) -> Any:
    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            view.start_epoch(epoch + 1, epochs, steps)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True
                self.non_finite = (self.epoch, batch + 1, float(loss))
            view.advance(batch + 1, {k: float(v) for k, v in (logs or {}).items()})

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch + 2
            view.end_epoch(epoch + 1, {k: float(v) for k, v in (logs or {}).items()})

    progress = Progress()
    progress.epoch, progress.non_finite = 1, None
    return progress


def metadata(
    spec: Spec, splits: Splits, task: str, model: Any, extra: dict[str, Any]
) -> dict[str, Any]:
    """The dlcli.json embedded in model.keras."""
    import keras
    import tensorflow as tf

    info = splits.info
    image = info.image
    return {
        "versions": {"dlcli": __version__, "keras": keras.__version__, "tensorflow": tf.__version__},
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "dataset": {"source": info.source, "digest": info.digest, "sizes": info.sizes},
        "task": task,
        "class_names": info.class_names,
        "input": {
            "shape": list(splits.train.x.shape[1:]),
            "dtype": str(splits.train.x.dtype),
            "feature_names": info.feature_names,
            "image": None if image is None else image.__dict__,
        },
        **extra,
    }


def train(spec: Spec, spec_dir: Path, view: ProgressView, *, tensorboard: bool = False) -> TrainResult:
    """Train the model a spec describes and write everything to a new run directory."""
    started = time.perf_counter()
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": random.SystemRandom().randrange(2**31)})
    assert spec.seed is not None
    output_dir = Path(spec.output.dir)
    output_dir = output_dir if output_dir.is_absolute() else Path.cwd() / output_dir
    run_dir = new_run_dir(output_dir, spec.name)
    from dlcli import artifact, report

    artifact.atomic_write(run_dir / "spec.yaml", spec.to_yaml().encode())

    import keras

    from dlcli.device import select_device
    from dlcli.model import (
        adapt_preprocessing,
        build_callbacks,
        build_model,
        compile_model,
        load_plugins,
    )

    keras.utils.set_random_seed(spec.seed)
    device = select_device()
    splits = load_dataset(spec.dataset, spec_dir, spec.seed)
    load_plugins(spec.plugins)
    steps = math.ceil(len(splits.train) / spec.fit.batch_size)
    with device.strategy.scope():
        model = build_model(spec.model, spec.name, float32_outputs=device.mixed_precision)
        compile_model(model, spec, steps_per_execution=_steps_per_execution(spec, steps))
    loss_name = str(spec.compile.loss.class_name if not isinstance(spec.compile.loss, dict) else "")
    task = task_of(loss_name, model.output_shape[-1] if not isinstance(model.output_shape, list) else 0)
    check_against_model(splits, model, task)
    adapt_preprocessing(model, spec.model, splits.train.x)

    view.start(device.description, splits, run_dir)
    progress = _progress_callback(view, spec.fit.epochs, steps)
    callbacks = [
        *build_callbacks(spec),
        progress,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ]
    if tensorboard or spec.output.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    validation = splits.validation
    fit_started = time.perf_counter()
    try:
        history = model.fit(
            splits.train.x,
            splits.train.y,
            batch_size=spec.fit.batch_size,
            epochs=spec.fit.epochs,
            validation_data=None if validation is None else (validation.x, validation.y),
            shuffle=spec.fit.shuffle,
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        view.stop()
    fit_seconds = time.perf_counter() - fit_started
    if progress.non_finite:
        epoch, batch, value = progress.non_finite
        raise NonFiniteLossError(
            f"the loss became {value} in epoch {epoch}, batch {batch}; nothing was saved as the "
            f"result (lower the learning rate, or check the data for extreme values)"
        )
    batch_size = max(spec.fit.batch_size, PREDICT_BATCH_SIZE)
    test_metrics = model.evaluate(
        splits.test.x, splits.test.y, batch_size=batch_size, verbose=0, return_dict=True
    )
    test_metrics = {name: float(value) for name, value in test_metrics.items()}
    evaluated_on = "train" if splits.test_is_train else "test"
    history_lists = {k: [float(v) for v in values] for k, values in history.history.items()}
    total_seconds = time.perf_counter() - started
    training = {
        "epochs": len(history_lists.get("loss", [])),
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "device": device.description,
    }
    metrics = {"evaluated_on": evaluated_on, evaluated_on: test_metrics, **training}
    model_path = run_dir / "model.keras"
    extra = {"metrics": metrics, "training": training}
    artifact.save(model, metadata(spec, splits, task, model, extra), model_path)
    artifact.write_json(run_dir / "metrics.json", metrics)
    report.save_curves(history_lists, run_dir / "curves.png")
    if task in ("multiclass", "binary"):
        from dlcli.evaluate import confusion_matrix

        predicted = model.predict(splits.test.x, batch_size=batch_size, verbose=0)
        matrix = confusion_matrix(splits.test.y, predicted, task)
        labels = splits.info.class_names or [str(i) for i in range(len(matrix))]
        report.save_confusion_matrix(matrix, labels, run_dir / "confusion_matrix.png")
    return TrainResult(
        run_dir, model_path, task, test_metrics, evaluated_on, history_lists,
        fit_seconds, time.perf_counter() - started, device.description,
    )  # fmt: skip
