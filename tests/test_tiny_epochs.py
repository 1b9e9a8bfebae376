"""Tiny data, many epochs: several epochs to one compiled program (dlcli.train.loop
`fit_epochs_at_once`) train exactly as Keras's `fit` over dlcli's per-epoch executions, and a
run killed between two such programs resumes to the same weights."""

from __future__ import annotations

import io
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .helpers import dlcli_command, home_env, run_cli, tiny_spec, write_tiny_data


def _model(jit_compile: bool) -> Any:
    """A small classifier with state beyond its weights: moving statistics and a seed."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=1,
    )
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_epochs_in_one_program_train_exactly_as_fit(jit_compile: bool) -> None:
    """Same shuffled batches, same steps, same validation: every log of every epoch and every
    weight (the optimizer's too) bit for bit, with or without XLA; 9 epochs as programs of 4,
    4 and 1 epochs, each epoch 6 full batches of 8 and one of 2, with sample weights."""
    import keras

    from dlcli.model.build import create_training_variables
    from dlcli.train.loop import fit_epochs_at_once, training_data

    generator = np.random.default_rng(0)
    x = generator.random((62, 4), dtype="float32")
    y = (x.sum(axis=1) > 2).astype("float32")
    weights = generator.choice([0.5, 1.0, 2.0], 50).astype("float32")
    x, validation = x[:50], (x[50:], y[50:])  # 12 validation rows: a batch of 8 and one of 4
    y = y[:50]

    fit_model = _model(jit_compile)
    create_training_variables(fit_model, x, y)
    data = training_data(fit_model, x, y, 8, True, replicas=1, weights=weights)
    history = fit_model.fit(
        **data, epochs=9, validation_data=validation, validation_batch_size=8, verbose=0
    ).history

    model = _model(jit_compile)
    create_training_variables(model, x, y)
    recorded = keras.callbacks.History()
    programs: list[int] = []
    fit_epochs_at_once(
        model,
        x,
        y,
        8,
        True,
        epochs=9,
        first_epoch=0,
        per_execution=4,
        callbacks=[recorded],
        executed=lambda: programs.append(int(model.optimizer.iterations.numpy())),
        validation=validation,
        weights=weights,
    )

    assert programs == [4 * 7, 8 * 7, 9 * 7]  # the backup's moments: after 4, 8 and 9 epochs
    assert list(recorded.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert recorded.history == history
    for ours, theirs in zip(model.variables, fit_model.variables, strict=True):
        assert np.array_equal(ours.numpy(), theirs.numpy()), ours.path


def _weights(model_file: Path) -> dict[str, np.ndarray]:
    """Every array in a .keras file's weights (the optimizer's included), by its path."""
    import h5py

    with zipfile.ZipFile(model_file) as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data)) as weights:
        weights.visititems(
            lambda name, item: (
                arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def test_a_run_killed_between_programs_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """600 epochs of 2 batches: programs of 256, 256 and 88 epochs, a backup after each. Killed
    (SIGKILL) once the first backup is made, then resumed: the history and every weight (the
    optimizer's too; the Dropout masks, by the history) are those of the run never killed."""
    spec = tiny_spec(
        model={
            "layers": [
                {"Dense": {"units": 8, "activation": "relu"}},
                {"Dropout": {"rate": 0.25}},
                {"Dense": {"units": 3, "activation": "softmax"}},
            ]
        },
        fit={"epochs": 600, "batch_size": 16},
        output={"onnx": False},
    )
    write_tiny_data(tmp_path, 32, spec=spec, classes=3)
    whole = run_cli(["train", "spec.yaml"], None, tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert "Epochs run 256 to one compiled program (2 steps each), backed up after each " in (
        whole.stderr
    )

    killed = tmp_path / "runs" / "tiny-2"
    process = subprocess.Popen(
        [*dlcli_command(), "train", "spec.yaml"],
        cwd=tmp_path,
        env=home_env(tmp_path / "home"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(killed.glob("backup/epoch-*")) and process.poll() is None:
        assert time.monotonic() < deadline, "no backup in 300 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    kept = [path.name for path in killed.glob("backup/epoch-*")]
    assert kept in (["epoch-256"], ["epoch-512"])

    resumed = run_cli(["train", "--resume", killed], None, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    first = tmp_path / "runs" / "tiny-1"
    assert (killed / "history.csv").read_text() == (first / "history.csv").read_text()
    ours, theirs = _weights(killed / "model.keras"), _weights(first / "model.keras")
    # 2 kernels and 2 biases; RMSprop's iterations, learning rate and 4 velocities
    assert ours.keys() == theirs.keys() and len(ours) == 10
    for name, array in ours.items():
        assert np.array_equal(array, theirs[name]), name
