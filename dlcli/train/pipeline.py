"""Training: a spec becomes a trained, evaluated, saved model in its own run folder.

`train()` reads as the pipeline: prepare (read the data while TensorFlow loads, build and compile
the model, check the data against it), fit (Keras's `fit` with dlcli's callbacks, in the run
folder), finish (score the test split, save model.keras with its dlcli.json, metrics and
plots). The modules beside this one hold the parts: `runs` (run folders, run.json,
history.csv), `resume` (backups and --resume), `loop` (how `fit` executes its steps) and
`callbacks` (progress, signals, NaN, early stops, and the errors a fit ends in).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dlcli.data.class_codes import Head, codes_as_names
from dlcli.data.common import Split, Splits, in_memory, in_order, resolve_path, take
from dlcli.data.example_stream import ExampleStream
from dlcli.data.image_stream import ImageFiles, first_failure
from dlcli.data.load import check_files, load_dataset
from dlcli.distribute.cluster import (
    Cluster,
    check_batch,
    from_environment,
    new_seed,
    wait_for_workers,
)
from dlcli.distribute.keras_fixes import FUSED_LOOP_KERAS, fused_loop_tested
from dlcli.errors import TrainingError, UsageError
from dlcli.model import artifact
from dlcli.model.backbones import check_weights_files
from dlcli.model.checks import add_channel_axis, check_against_model, check_names
from dlcli.model.feature_space import string_preprocessing, with_encoder
from dlcli.model.signature import ModelTask, Task, describe_outputs, tasks_of
from dlcli.model.window_normalization import window_input, with_normalization
from dlcli.runs.record import (
    kept_only_if_resumable,
    locked,
    new_run_dir,
    output_folder,
    read_history,
    shell_path,
    write_history,
    write_record,
)
from dlcli.spec.columns import typed_columns
from dlcli.spec.schema import CsvSource, Spec
from dlcli.track.tracked import tracked
from dlcli.train import backup, workers
from dlcli.train.callbacks import (
    Monitor,
    Stop,
    early_stop_note,
    failure_error,
    monitored,
    progress_callback,
    signals_stop,
    stop_error,
    weights_epoch,
)
from dlcli.train.export_onnx import write_onnx
from dlcli.train.fine_tune import FIRST_PHASE, SECOND_PHASE, check_unfreeze, enter_second_phase
from dlcli.train.loop import (
    compiled_arrays,
    decoded_steps,
    epochs_per_execution,
    fit_epochs_at_once,
    steps_per_execution,
    training_data,
)
from dlcli.train.model_info import model_info
from dlcli.train.resume import more_epochs, prepare_resume, restore_backup
from dlcli.train.sample_weights import sample_weights
from dlcli.train.warm_start import freeze, load_initial_weights

if TYPE_CHECKING:
    from dlcli.track.mlflow_run import MlflowRun
    from dlcli.track.tracked import TrackRequest

EXPORT_EXAMPLES = 512  # the examples `dlcli export` compares an export with Keras on


class ProgressView(Protocol):
    """What training reports as it goes (rendered by dlcli.cli.render)."""

    def start(
        self, device: str, splits: Splits, run_dir: Path, *, monitor: Monitor | None = None
    ) -> None: ...
    def note(self, text: str) -> None: ...
    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def advance(self, steps_done: int, logs: dict[str, float]) -> None: ...
    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """What `train` did: where the run and model are, the test scores and the history."""

    run_dir: Path
    model_path: Path
    task: ModelTask
    test_metrics: dict[str, float]
    evaluated_on: str  # "test", or "train" when the dataset has no test split
    history: dict[str, list[float]]
    fit_seconds: float
    total_seconds: float
    device: str
    weights_epoch: int  # the epoch whose weights were saved and scored (EarlyStopping restores)
    stopped_early: str | None = None  # what ended training before `fit.epochs`, and what it kept
    exported: str | None = None  # model.onnx written beside the model, or why not
    saved_by: str | None = None  # in a cluster, the chief that wrote the run (not this worker)
    mlflow: dict[str, str] | None = None  # the MLflow run it was mirrored to (run_id, uri, ...)


@dataclass(frozen=True)
class Trial:
    """A trial of a search (dlcli.tune.tuner): a new run in `run_dir` (made by the caller), with
    more Keras callbacks, scored at the end on the validation split: a search never sees the
    test."""

    run_dir: Path
    callbacks: list[Any]
    tracking: TrackRequest | None = None  # a child run of the study's MLflow run


@dataclass(frozen=True)
class Prepared:
    """Everything `fit` needs, made before the run folder exists."""

    spec: Spec
    splits: Splits
    model: Any
    task: ModelTask
    device: Any  # dlcli.distribute.device.Device
    callbacks: list[Any]  # the spec's own, built from `fit.callbacks`
    notes: list[str]  # said before training starts
    weights: Any = None  # a training weight per example (dlcli.train.sample_weights), or None
    cluster: Cluster | None = None  # the workers training together (TF_CONFIG)
    encoder: Any = None  # typed columns or text -> features (model.feature_space), saved first


def run(
    spec_path: Path | None,
    overrides: Sequence[str] = (),
    *,
    view: ProgressView,
    resume: Path | None = None,
    restart: bool = False,
    tensorboard: bool = False,
    skip_bad: bool = False,
    start_from: Path | None = None,
    mlflow: str | None = None,
) -> TrainResult:
    """What `dlcli train` does: train the spec at `spec_path`, or continue the run `resume`.

    Args:
        spec_path: the YAML spec (None with `resume`).
        overrides: `KEY.PATH=VALUE` strings applied to the spec (not with `resume`).
        view: where progress goes.
        resume: a run folder to continue from its backup, with its own spec.yaml.
        restart: with `resume`, start that run over (after its spec file changed).
        tensorboard: write TensorBoard logs into the run folder.
        skip_bad: leave out image files that cannot be read, counted.
        start_from: a .keras model whose weights the run starts from (`fit.initial_weights`,
            as a path from the current folder, whatever folder the spec is in).
        mlflow: `--mlflow`: "" for the spec's or the default tracking URI, or a URI; None
            leaves it to the spec's `output.mlflow` (see dlcli.track.mlflow_run.tracking_uri).

    Returns:
        The TrainResult of `train`.

    Raises:
        UsageError: `resume` together with a spec or overrides, or neither given.
        DlcliError: any mistake in the spec, data or run, as `train` raises them.

    Example:
        run(Path("configs/xor.yaml"), ["fit.epochs=10"], view=render.TrainView(console))
    """
    if resume is not None:
        epochs = more_epochs(resume, spec_path, overrides, restart=restart)
        if not resume.is_dir():
            raise UsageError(f"--resume {resume}: no such run directory")
        cluster = from_environment()
        reads = bool(cluster and not cluster.chief)  # reads the chief's run, writes nothing there
        # before a restart clears the backup: one process per run (the chief, in a cluster)
        with nullcontext() if reads else locked(resume):
            spec, spec_dir = prepare_resume(resume, restart=restart, epochs=epochs, read_only=reads)
            return train(
                spec,
                spec_dir,
                view,
                tensorboard=tensorboard,
                run_dir=resume,
                skip_bad=skip_bad,
                mlflow=mlflow,
            )
    if spec_path is None:
        raise UsageError("give a SPEC to train, or --resume RUN_DIR")
    if start_from is not None:
        overrides = [*overrides, f"fit.initial_weights={json.dumps(str(start_from.resolve()))}"]
    from dlcli.spec import keras_catalog
    from dlcli.spec.load import load_spec

    if not keras_catalog.cached():  # the first run: Keras's names are read here, not in a child
        from dlcli.distribute.device import import_keras, keep_compiled_programs

        keep_compiled_programs()  # before Keras sets up TensorFlow's devices
        import_keras()
    spec = load_spec(spec_path, overrides)
    if spec.search is not None:
        view.note(f"{spec_path}: the `search:` section is for `dlcli tune`; training without it")
    return train(
        spec,
        spec_path.parent,
        view,
        tensorboard=tensorboard,
        spec_file=spec_path,
        overrides=overrides,
        skip_bad=skip_bad,
        mlflow=mlflow,
    )


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
    trial: Trial | None = None,
    mlflow: str | None = None,
) -> TrainResult:
    """Train the model a spec describes and write everything to a new run folder.

    Args:
        spec: the checked spec (`dlcli.spec.load.load_spec`); a seed is chosen if it has none.
        spec_dir: the folder relative data paths start from (the spec file's).
        view: where progress goes.
        tensorboard: write TensorBoard logs into the run folder.
        run_dir: continue this run from its backup (see `prepare_resume`) instead; the
            caller holds its lock (`runs.locked`), as `run` does.
        spec_file: the spec file, recorded with `overrides` so that --resume can tell if the
            spec changed since.
        overrides: the `--set` strings that made `spec`.
        skip_bad: leave out image files that cannot be read, counted.
        trial: train as this trial of a search instead (see `Trial`).
        mlflow: `--mlflow` (see `run`); a resumed run that run.json says was tracked goes on
            in its MLflow run.

    Returns:
        A TrainResult: the run folder, model path, test scores and history.

    Raises:
        DataError, OutputError, TrainingError, Interrupted and the rest of the DlcliError
        family, each one line; a new run that fails before its first backup leaves no folder.

    Example:
        train(load_spec(Path("configs/xor.yaml")), Path("configs"), view)
    """
    started = time.perf_counter()
    cluster = from_environment()  # TF_CONFIG, checked before TensorFlow loads
    if cluster and trial:
        raise UsageError("dlcli tune trains its trials in one process: unset TF_CONFIG")
    if spec.seed is None:  # in a cluster, the same on every worker
        spec = spec.model_copy(update={"seed": new_seed(cluster)})
    if cluster:
        check_batch(spec.fit.batch_size, cluster.size, str(spec_file or run_dir))
        wait_for_workers(cluster)
    resuming, worker = run_dir is not None, bool(cluster and not cluster.chief)
    request = None if worker else _track_request(mlflow, spec, trial)  # MLflow installed?
    check_files(spec.dataset, spec_dir, spec_file)  # before TensorFlow loads
    check_weights_files(spec.model, spec_dir, spec_file)
    if spec.fit.initial_weights is not None:
        artifact.inspect(resolve_path(spec.fit.initial_weights, spec_dir), require_metadata=False)
    output_dir = None if resuming or trial or worker else output_folder(spec)
    prepared = _prepare(spec, spec_dir, skip_bad=skip_bad, cluster=cluster)
    with workers.scratch_folder(cluster) if cluster and worker else nullcontext() as scratch:
        shared = run_dir  # resuming: the run whose backup to continue
        if scratch is not None:  # a worker's own files, the chief's run continued
            assert cluster is not None  # only a worker of a cluster has a scratch folder
            run_dir, view = scratch, workers.WorkerView(view, cluster)
        elif trial is not None:
            run_dir = trial.run_dir
        made_output_dir = False
        if run_dir is None:  # only now: a mistake found above leaves no run folder behind
            assert output_dir is not None
            made_output_dir = not output_dir.exists()
            run_dir = new_run_dir(output_dir, spec.name)
        with (
            locked(run_dir) if not (resuming or worker) else nullcontext(),  # not a scratch
            kept_only_if_resumable(run_dir, resuming, made_output_dir=made_output_dir),
        ):
            write_record(run_dir, spec, spec_dir, spec_file, overrides, new=not resuming or worker)
            recorded = _recorded_tracking(run_dir) if resuming and not worker else None
            with tracked(
                request, recorded, run_dir, _params(prepared.spec), _facts(prepared), view
            ) as tracker:
                more = [
                    *(trial.callbacks if trial else []),
                    *([tracker.callback] if tracker else []),
                ]
                fit_seconds = _fit(
                    prepared,
                    run_dir,
                    view,
                    more,
                    restore=shared if resuming else None,
                    tensorboard=tensorboard,
                )
                result = _finish(
                    prepared, run_dir, fit_seconds, started, validation=trial is not None
                )
                if tracker is None:
                    return result
                seconds = {"fit_seconds": fit_seconds, "total_seconds": result.total_seconds}
                tracker.finish(
                    run_dir, result.history, result.evaluated_on, result.test_metrics, seconds
                )
                tracking = tracker.run
                return replace(result, mlflow=tracking.to_dict() if tracking else None)


def _track_request(flag: str | None, spec: Spec, trial: Trial | None) -> TrackRequest | None:
    """Where this run is tracked in MLflow (None: not tracked); MLflow checked installed."""
    from dlcli.track.mlflow_run import experiment_name, require_mlflow, tracking_uri
    from dlcli.track.tracked import TrackRequest

    if trial is not None:
        return trial.tracking
    uri = tracking_uri(flag, spec)
    if uri is None:
        return None
    require_mlflow("--mlflow" if flag is not None else "output.mlflow")
    return TrackRequest(uri=uri, experiment=experiment_name(spec))


def _recorded_tracking(run_dir: Path) -> MlflowRun | None:
    """The MLflow run that a resumed run's run.json names (MLflow checked installed)."""
    from dlcli.runs.record import RUN_RECORD, read_record
    from dlcli.track.mlflow_run import MlflowRun, require_mlflow

    recorded = MlflowRun.from_dict(read_record(run_dir / RUN_RECORD)["mlflow"])
    if recorded is not None:
        require_mlflow(f"--resume of a run tracked in MLflow ({recorded.tracking_uri})")
    return recorded


def _params(spec: Spec) -> dict[str, Any]:
    """The resolved spec as MLflow params see it (as spec.yaml writes it)."""
    return spec.model_dump(mode="json", exclude_none=True, by_alias=True)


def _facts(prepared: Prepared) -> dict[str, str]:
    """The params of a run besides its spec: its data, versions and device."""
    import keras
    import tensorflow as tf

    from dlcli import __version__

    info = prepared.splits.info
    return {
        "dataset.digest": info.digest,
        **{f"dataset.size.{split}": str(size) for split, size in info.sizes.items()},
        "version.dlcli": __version__,
        "version.keras": keras.__version__,
        "version.tensorflow": tf.__version__,
        "device": prepared.device.description,
    }


def _prepare(spec: Spec, spec_dir: Path, *, skip_bad: bool, cluster: Cluster | None) -> Prepared:
    """Data, model and device, with the data checked against the model, loss and metrics."""
    from dlcli.distribute.device import NeedsMainThread, import_tensorflow, keep_compiled_programs

    assert spec.seed is not None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlcli-data") as reader:
        # The dataset is read while TensorFlow loads; a source that needs Keras (a download)
        # is read on this thread instead, once TensorFlow is loaded (see dlcli.distribute.device).
        reading = reader.submit(
            load_dataset, spec.dataset, spec_dir, spec.seed, skip_bad=skip_bad, stream=True
        )
        notes = [note] if (note := keep_compiled_programs()) else []
        import_tensorflow()
        try:
            splits = reading.result()
        except NeedsMainThread:
            splits = load_dataset(spec.dataset, spec_dir, spec.seed, skip_bad=skip_bad, stream=True)
    import keras

    from dlcli.distribute.device import select_device
    from dlcli.model import build as models

    device = select_device(cluster=cluster)  # first: a cluster's strategy sets up TensorFlow
    keras.utils.set_random_seed(spec.seed)
    models.load_plugins(spec.plugins)
    per_execution = steps_per_execution(
        spec.compile.steps_per_execution, len(splits.train), spec.fit.batch_size
    )
    if isinstance(splits.train.x, ExampleStream) and spec.compile.steps_per_execution == "auto":
        per_execution = min(per_execution, decoded_steps(splits.train.x, spec.fit.batch_size))
    if cluster:
        spec, per_execution = workers.for_workers(spec, device, per_execution, notes)
    splits, model_spec, encoder = encode_columns(spec, splits, notes)
    series = splits.info.windows  # time windows: the training rows' Normalization in front
    if series is not None:
        model_spec = window_input(model_spec, series)
        notes.append(series.note())
    with device.strategy.scope():
        model = models.build_model(
            model_spec, spec.name, float32_outputs=device.mixed_precision, base_dir=spec_dir
        )
        if series is not None:
            model, model_spec = with_normalization(model, model_spec, series)
        freeze(model, spec.fit.freeze)
        check_unfreeze(model, spec.fit.fine_tune)
        models.compile_model(model, spec, steps_per_execution=per_execution)
    splits = add_channel_axis(splits, model)
    check_names(splits.train, model, spec.compile)  # before tasks_of reads compile.loss by name
    tasks = tasks_of(spec.compile.loss, model)
    task: ModelTask = next(iter(tasks.values())) if len(tasks) == 1 else "multioutput"
    csv = spec.dataset.csv
    if csv is not None and csv.label_kind != "indices":
        splits, codes_notes = codes_as_names(splits, _class_code_heads(csv, model, tasks))
        notes.extend(codes_notes)
    check_against_model(splits, model, spec.compile)
    train_x = splits.train.x
    streamed = isinstance(train_x, ExampleStream)
    if cluster and isinstance(train_x, ImageFiles):
        notes.append(
            f"Image files sharded: each of the {cluster.size} workers decodes only its own part "
            "of every batch"
        )
    models.adapt_preprocessing(
        model, model_spec, train_x.batches(spec.fit.batch_size) if streamed else train_x
    )
    if spec.fit.initial_weights is not None:  # after adapting: the file's statistics stay
        path = resolve_path(spec.fit.initial_weights, spec_dir)
        notes.append(load_initial_weights(model, path))
    weights, note = sample_weights(
        spec.fit.class_weight, splits.train, splits.info.class_names, tasks, describe_outputs(model)
    )
    _create_training_variables(model, splits.train, device)
    callbacks = models.build_callbacks(spec)
    return Prepared(
        spec,
        splits,
        model,
        task,
        device,
        callbacks,
        [*notes, *([note] if note else [])],
        weights,
        cluster,
        encoder,
    )


def _create_training_variables(model: Any, train: Split, device: Any) -> None:
    """The optimizer's and compiled metrics' variables made now (`create_training_variables`),
    on one device; a strategy makes Keras create them itself."""
    from dlcli.model.build import create_training_variables

    if device.strategy.num_replicas_in_sync == 1:
        first = in_memory(train.x, np.arange(1))
        create_training_variables(model, first, targets(model, train.y))


def _second_phase(prepared: Prepared) -> str:
    """Enter the second phase of `fit.fine_tune` (`enter_second_phase`); its note."""
    with prepared.device.strategy.scope():
        note = enter_second_phase(prepared.model, prepared.spec)
        _create_training_variables(prepared.model, prepared.splits.train, prepared.device)
    return note


def _class_code_heads(csv: CsvSource, model: Any, tasks: dict[str, Task]) -> dict[str, Head]:
    """The model's outputs fed by the CSV's label columns, by output name ("" for one output)."""
    outputs = describe_outputs(model)
    if len(outputs) == 1:
        (output,) = outputs
        return {"": Head(output.units or 1, tasks[output.name], csv.label_columns[0])}
    columns = csv.labels or {}
    return {
        output.name: Head(output.units or 1, tasks[output.name], columns[output.name])
        for output in outputs
        if output.name in columns
    }


def encode_columns(spec: Spec, splits: Splits, notes: list[str]) -> tuple[Splits, Any, Any]:
    """Typed CSV columns or text folders encoded by their FeatureSpace (adapted on the training
    rows only): (the splits with encoded features, the model spec with its input width, the
    encoder or None); what was done about empty cells and the encoded width are added to
    `notes`."""
    missing = splits.info.missing
    if missing is not None and (note := missing.note()):
        notes.append(note)
    types = typed_columns(spec.dataset)
    if types is None:
        return splits, spec.model, None
    from dlcli.model.feature_space import adapt_spec, encoded_splits, encoding_note

    encoder = adapt_spec(spec, splits.train.x)
    splits = encoded_splits(encoder, splits)
    width = int(splits.train.x.shape[1])
    raw = "text" if spec.dataset.text_folders else "columns"
    notes.append(f"Features: {encoding_note(spec, encoder)}; model.keras takes the raw {raw}")
    model_spec = spec.model
    if model_spec.input is None:
        model_spec = model_spec.model_copy(update={"input": [width]})
    return splits, model_spec, encoder


def _start(
    prepared: Prepared, run_dir: Path, view: ProgressView, restore: Path | None
) -> tuple[backup.Generation | None, bool]:
    """Say how training runs and load the backup to continue from: (that generation, whether
    the compiled executions are used)."""
    import keras

    monitor = monitored(prepared.spec.fit.callbacks, prepared.splits.validation is not None)
    view.start(prepared.device.description, prepared.splits, run_dir, monitor=monitor)
    for note in prepared.notes:
        view.note(note)
    fused = fused_loop_tested(keras.__version__)
    if not fused:
        view.note(
            f"Keras {keras.__version__} is outside the versions dlcli was tested with "
            f"({FUSED_LOOP_KERAS}x): training with Keras's own loop"
        )
    if restore is None:
        return None, fused
    with prepared.device.strategy.scope():  # the optimizer's variables are made here
        epochs, tidy = prepared.spec.fit.epochs, restore == run_dir
        restored = restore_backup(
            prepared.model,
            restore,
            epochs,
            view,
            tidy=tidy,
            enter_second_phase=lambda: _second_phase(prepared),
        )
        return restored, fused


def _fit(
    prepared: Prepared,
    run_dir: Path,
    view: ProgressView,
    more_callbacks: list[Any],
    *,
    restore: Path | None,
    tensorboard: bool,
) -> float:
    """Keras's `fit` with the backup, history, progress and the spec's callbacks; its seconds.

    `restore` is the run folder whose backup to continue (this one, or in a cluster the one
    the chief continues). A run with `fit.fine_tune` calls `fit` once for each phase it has
    left, the epochs numbered on (dlcli.train.fine_tune). Tiny data runs many epochs to one
    compiled program (`dlcli.train.loop.epochs_per_execution` says when)."""
    import keras
    import tensorflow as tf

    spec, splits, model = prepared.spec, prepared.splits, prepared.model
    restored, fused = _start(prepared, run_dir, view, restore)
    steps = math.ceil(len(splits.train) / spec.fit.batch_size)
    progress = progress_callback(view, spec.fit.epochs, steps)
    history = list(restored.history) if restored else []
    write_history(run_dir / "history.csv", history)
    more = [*prepared.callbacks, *more_callbacks]
    if tensorboard or spec.output.tensorboard:
        more.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard")))
    replicas = prepared.device.strategy.num_replicas_in_sync
    first_epoch = restored.epoch if restored else 0
    y, weights = targets(model, splits.train.y), prepared.weights
    if weights is not None and isinstance(y, list):  # one weight per example, for each output
        weights = [weights] * len(y)
    fine_tune = spec.fit.fine_tune
    at_once = epochs_per_execution(
        model,
        steps,
        steps_setting=spec.compile.steps_per_execution,
        compiled=_in_one_program(splits, y, weights, replicas=replicas, fused=fused),
        # the second phase of `fit.fine_tune` recompiles the model between two epochs
        callbacks_between_epochs=bool(more) or fine_tune is not None,
        validation_freq=spec.fit.validation_freq,
    )
    validation: Any = None
    validation_batch_size: int | None = spec.fit.batch_size
    if splits.validation is not None:
        validation = (splits.validation.x, targets(model, splits.validation.y))
        if isinstance(validation[0], ExampleStream) and at_once == 1:  # `fit` takes a dataset
            validation = validation[0].batches(
                spec.fit.batch_size, validation[1], strategy=prepared.device.strategy
            )
            validation_batch_size = None  # a dataset comes in its own batches
    backups = backup.callback(run_dir, history, at_each_epoch=at_once == 1)
    backups.phase = restored.phase if restored else FIRST_PHASE
    callbacks = [backups, progress, *more]
    if at_once > 1:
        view.note(
            f"Epochs run {at_once} to one compiled program ({steps} step"
            f"{'s' * (steps != 1)} each), backed up after each program"
        )
    cluster = prepared.cluster
    if cluster:
        workers.agree(prepared.device.strategy, cluster, spec, first_epoch)
    started = time.perf_counter()
    if first_epoch >= spec.fit.epochs:  # killed after its last backup: only the end is left
        view.stop()
        return 0.0

    def fit_epochs(first: int, last: int) -> None:
        """Train from after epoch `first` to epoch `last`, numbered on: several epochs to a
        compiled program, or Keras's `fit`."""
        if at_once > 1:  # `fit_epochs_at_once` takes the arrays as they are
            fit_epochs_at_once(
                model,
                splits.train.x,
                y,
                spec.fit.batch_size,
                spec.fit.shuffle,
                epochs=last,
                first_epoch=first,
                per_execution=at_once,
                callbacks=callbacks,
                executed=backups.write,
                validation=validation,
                weights=weights,
            )
            return
        data = training_data(
            model,
            splits.train.x,
            y,
            spec.fit.batch_size,
            spec.fit.shuffle,
            replicas=replicas,
            fused=fused,
            first_epoch=first,
            weights=weights,
        )
        model.fit(
            **data,
            epochs=last,
            initial_epoch=first,
            validation_data=validation,
            validation_batch_size=validation_batch_size,
            validation_freq=spec.fit.validation_freq,
            callbacks=callbacks,
            verbose=0,
        )

    try:
        with signals_stop(progress):
            if backups.phase == FIRST_PHASE:
                last = fine_tune.from_epoch - 1 if fine_tune else spec.fit.epochs
                if first_epoch < last:
                    fit_epochs(first_epoch, last)
                if fine_tune is not None:  # after an early stop, the second phase starts now
                    first_epoch = len(history)
                    view.note(_second_phase(prepared))
                    backups.phase = SECOND_PHASE
            if backups.phase == SECOND_PHASE:
                # `training_data` draws its shuffling seed as a run resumed in this phase does
                tf.random.set_seed(spec.seed)
                fit_epochs(first_epoch, spec.fit.epochs)
    except Stop as stop:
        if cluster and not cluster.chief:
            raise workers.worker_stop(stop, cluster) from None
        raise stop_error(stop, run_dir, new_run=restore is None) from None
    except Exception as error:
        if cluster and (lost := workers.lost_worker(error, cluster, run_dir)):
            raise lost from error
        validation_x = splits.validation.x if splits.validation else None
        if bad_file := first_failure(splits.train.x, validation_x):
            raise bad_file from error
        raise failure_error(error, spec, run_dir) from error
    finally:
        view.stop()
    if cluster:
        view.note(workers.same_weights(prepared.device.strategy, cluster, model))
    return time.perf_counter() - started


def _in_one_program(splits: Splits, y: Any, weights: Any, *, replicas: int, fused: bool) -> bool:
    """Whether the training (and validation) data can run inside dlcli's compiled programs
    (`compiled_arrays`): arrays, or streams whose examples TensorFlow ops make (windows) as
    their keys; image files are decoded by Python, between programs."""

    def in_program(x: Any) -> Any:
        if isinstance(x, ExampleStream):
            return x.keys if x.in_graph else None
        return x

    train_x = in_program(splits.train.x)
    held = splits.validation
    if train_x is None or (held is not None and in_program(held.x) is None):
        return False
    return compiled_arrays(train_x, y, weights, replicas=replicas, fused=fused)


def _finish(
    prepared: Prepared, run_dir: Path, fit_seconds: float, started: float, *, validation: bool
) -> TrainResult:
    """Score the test split (or the `validation` split), then save model.keras (only then drop
    the backup), metrics.json, curves.png and, for classifiers, confusion_matrix.png."""
    from dlcli.distribute.device import record_compiled_programs
    from dlcli.model.scoring import confusion_matrix, score
    from dlcli.utils import plots

    spec, splits, model, task = prepared.spec, prepared.splits, prepared.model, prepared.task
    if int(model.optimizer.iterations.numpy()) == 0:  # .numpy(): a MirroredVariable has no int()
        raise TrainingError(
            f"training ran no step (the training data gave no batch); nothing was saved in "
            f"{shell_path(run_dir)}"
        )
    classifier = task in (Task.multiclass, Task.binary)
    scored = splits.validation if validation and splits.validation else splits.test
    try:
        test_metrics, predicted = score(
            model, scored.x, targets(model, scored.y), spec.fit.batch_size, outputs=classifier
        )
    except Exception as error:
        if bad_file := first_failure(scored.x):  # a test photo that a stream cannot decode
            raise bad_file from error
        raise
    evaluated_on = "train" if splits.test_is_train else "test"
    evaluated_on = "validation" if scored is splits.validation else evaluated_on
    history = read_history(run_dir / "history.csv")
    epochs_run = len(history.get("loss", []))
    stopped_early = early_stop_note(prepared.callbacks, model, epochs_run, spec.fit.epochs)
    training = {
        "epochs": epochs_run,
        **({"stopped_early": stopped_early} if stopped_early else {}),
        "fit_seconds": round(fit_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "device": prepared.device.description,
        "workers": prepared.device.workers,
    }
    metrics = {"evaluated_on": evaluated_on, evaluated_on: test_metrics, **training}
    model_path = run_dir / "model.keras"
    saved = model
    if prepared.encoder is not None:  # compiled as trained, for `dlcli evaluate`; no XLA: text
        from dlcli.model.build import compile_model

        saved = with_encoder(prepared.encoder, model)
        without_xla = spec.compile.model_copy(update={"jit_compile": False})
        compile_model(
            saved, spec.model_copy(update={"compile": without_xla}), steps_per_execution=1
        )
        saved.optimizer.build(saved.trainable_variables)  # as loading builds it: no warning
    artifact.save(
        saved, model_info(prepared, {"metrics": metrics, "training": training}), model_path
    )
    exported = None
    if spec.output.onnx and prepared.encoder is not None:
        kinds = (splits.info.column_kinds or {}).values()
        exported = (
            f"model.onnx not written: tf2onnx has no form for {string_preprocessing(kinds)}; "
            "dlcli predict runs model.keras (TensorFlow)"
        )
    elif spec.output.onnx:
        source = "train" if splits.test_is_train else "test"
        exported = write_onnx(model, model_path, _in_memory(splits.test), f"the {source} split")
    artifact.write_json(run_dir / "metrics.json", metrics)
    plots.save_curves(history, run_dir / "curves.png")
    if predicted is not None:
        assert isinstance(task, Task)  # scored with outputs: a classifier
        matrix = confusion_matrix(scored.y, predicted, task)
        labels = splits.info.class_names or [str(i) for i in range(len(matrix))]
        plots.save_confusion_matrix(matrix, labels, run_dir / "confusion_matrix.png")
    record_compiled_programs()  # the programs this run loaded or wrote worked
    backup.drop(run_dir)  # only now: until then, --resume finishes the run from its backup
    cluster = prepared.cluster
    saved_by = f"the chief ({cluster.workers[0]})" if cluster and not cluster.chief else None
    return TrainResult(
        run_dir=run_dir,
        model_path=model_path,
        task=task,
        test_metrics=test_metrics,
        evaluated_on=evaluated_on,
        history=history,
        fit_seconds=fit_seconds,
        total_seconds=time.perf_counter() - started,
        device=prepared.device.description,
        weights_epoch=weights_epoch(prepared.callbacks, epochs_run),
        stopped_early=stopped_early,
        exported=exported,
        saved_by=saved_by,
    )


def _in_memory(split: Split) -> Split:
    """The split; of a stream, the first `EXPORT_EXAMPLES` decoded (what an export checks)."""
    if not isinstance(split.x, ExampleStream):
        return split
    chosen = np.arange(min(len(split), EXPORT_EXAMPLES))
    return Split(split.x.decode(chosen), take(split.y, chosen))


def targets(model: Any, y: Any) -> Any:
    """The labels as Keras takes them: one array, or a list in the order of the outputs."""
    return in_order(y, [output.name for output in describe_outputs(model)])
