"""Fine-tuning in two phases (`fit.freeze`, then `fit.fine_tune`), offline: a backbone's weights
saved to a file here; the first phase leaves them bitwise as they were, the second trains the
unfrozen layers but not BatchNormalization nor the layers still frozen; one history, and a run
killed in either phase resumes to the weights of the run uninterrupted; mistakes in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from .helpers import home_env, invoke, write_photos

BACKBONE = {"alpha": 0.25, "include_top": False, "pooling": "avg", "name": "backbone"}
UNFROZEN = 10  # the backbone's last layers trained in the second phase


def spec(**fit: Any) -> str:
    """MobileNet (a quarter of its width) after augmentation, under Dropout and a new head:
    epoch 1 trains the head, epochs 2 and 3 the backbone's last layers too."""
    return yaml.safe_dump(
        {
            "name": "transfer",
            "seed": 5,
            "dataset": {"images": {"train": "photos", "image_size": [32, 32]}},
            "model": {
                "input": [32, 32, 3],
                "layers": [
                    {"RandomFlip": {"mode": "horizontal"}},
                    {"MobileNet": {**BACKBONE, "weights": "backbone.weights.h5"}},
                    {"Dropout": {"rate": 0.3}},
                    {"Dense": {"units": 2, "activation": "softmax", "name": "head"}},
                ],
            },
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {
                "epochs": 3,
                "batch_size": 8,
                "freeze": ["backbone"],
                "fine_tune": {
                    "from_epoch": 2,
                    "unfreeze": {"layer": "backbone", "layers": UNFROZEN},
                    "learning_rate": 0.001,
                },
                **fit,
            },
            "output": {"onnx": False},
        }
    )


def write_backbone(path: Path) -> Any:
    """A MobileNet with weights of its own saved to `path` (as a pretrained file would be); the
    model. Its BatchNormalization statistics are those of one batch: fresh ones (mean 0,
    variance 1) fade the features to nothing and the head would learn nothing."""
    import keras

    made = keras.applications.MobileNet(input_shape=(32, 32, 3), weights=None, **BACKBONE)
    for layer in made.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    made(np.random.default_rng(1).uniform(-1, 1, (16, 32, 32, 3)), training=True)
    made.save_weights(path)
    return made


def dlcli(folder: Path, *arguments: str, strace: list[str] | None = None) -> Any:
    command = [*(strace or []), sys.executable, "-m", "dlcli", *arguments]
    env = home_env(folder / "home", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def killed_at_backup(folder: Path, output: str, backup: int) -> Path:
    """`dlcli train spec.yaml` into the runs folder `output`, killed (SIGKILL, strace's fault
    injection) as it opens the weights file of its `backup`-th backup, on the main thread (3
    openings a backup): the backup before it is whole. The run folder."""
    run = folder / output / "transfer-1"
    weights_file = run / "backup" / ".partial" / "weights.weights.h5"
    strace = ["strace", "-f", "-qq", f"-P{weights_file}", "-e", "trace=openat"]
    strace += ["-e", f"inject=openat:signal=KILL:when={3 * (backup - 1) + 1}", "--"]
    arguments = ["train", "spec.yaml", "--quiet", "--set", f"output.dir={output}"]
    killed = dlcli(folder, *arguments, strace=strace)
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    assert not (run / "model.keras").exists()
    return run


def backup_state(run: Path) -> tuple[dict[str, Any], Path]:
    """(state.json, the weights file) of the run's one backup generation."""
    (generation,) = run.glob("backup/epoch-*")
    return json.loads((generation / "state.json").read_text()), generation / "weights.weights.h5"


def built_model(folder: Path) -> Any:
    """The spec's model as training builds it, without its weights file's optimizer."""
    import keras

    from dlcli.model.build import build_model
    from dlcli.spec.load import load_spec

    keras.utils.set_random_seed(5)
    return build_model(load_spec(folder / "spec.yaml").model, "transfer", base_dir=folder)


def assert_same(after: list[np.ndarray], before: list[np.ndarray]) -> None:
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    """A folder with the photos, the backbone's file and the spec, with the run of all 3 epochs
    never interrupted in it (runs/transfer-1); the backbone as made; that run's CLI result."""
    folder = tmp_path_factory.mktemp("phases")
    write_photos(folder / "photos")
    made = write_backbone(folder / "backbone.weights.h5")
    (folder / "spec.yaml").write_text(spec())
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    try:
        whole = invoke(["train", "spec.yaml"])
    finally:
        monkeypatch.undo()
    assert whole.exit_code == 0, whole.output
    return folder, made, whole


def test_two_phases_train_what_they_say(whole_run: tuple[Path, Any, Any]) -> None:
    """One history of 3 epochs; the backbone's BatchNormalization layers and all but its last
    layers bitwise as in the file, some of its last layers trained."""
    import keras

    folder, made, whole = whole_run
    normalizations = [
        layer for layer in made.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert (
        f"Fine-tuning: `backbone` trained (its last {UNFROZEN} of {len(made.layers)} layers; its "
        f"{len(normalizations)} BatchNormalization layers kept frozen), with adam made anew at "
        "learning rate 0.001\n"
    ) in whole.stderr
    first = folder / "runs" / "transfer-1"
    epochs = [row.split(",")[0] for row in (first / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3"]
    trained = keras.saving.load_model(first / "model.keras").get_layer("backbone").layers
    changed = []
    for index, (after, before) in enumerate(zip(trained, made.layers, strict=True)):
        normalization = isinstance(before, keras.layers.BatchNormalization)
        if normalization or index < len(made.layers) - UNFROZEN:  # frozen throughout
            assert_same(after.get_weights(), before.get_weights())
        elif before.weights:
            pairs = zip(after.get_weights(), before.get_weights(), strict=True)
            if any(not np.array_equal(a, b) for a, b in pairs):
                changed.append(before.name)
    assert changed == ["conv_pw_12", "conv_dw_13", "conv_pw_13"]  # with weights, in the last 10


def assert_resumed_as_whole(resumed: Path, whole: Path) -> None:
    import keras

    assert (resumed / "history.csv").read_text() == (whole / "history.csv").read_text()
    from_resume = keras.saving.load_model(resumed / "model.keras").get_weights()
    assert_same(from_resume, keras.saving.load_model(whole / "model.keras").get_weights())


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_killed_in_the_second_phase_resumes_to_the_same_weights(
    whole_run: tuple[Path, Any, Any],
) -> None:
    """Killed after epoch 2 (its backup records phase 2), --resume enters the second phase
    before loading the backup and ends with bitwise the history and weights of the whole run."""
    folder, _, _ = whole_run
    killed = killed_at_backup(folder, "second-phase", backup=3)
    state, _ = backup_state(killed)
    assert (state["epoch"], state["phase"]) == (2, 2)
    resumed = dlcli(folder, "train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch 2 of 3, from its backup\nFine-tuning: " in resumed.stderr
    assert_resumed_as_whole(killed, folder / "runs" / "transfer-1")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_killed_in_the_first_phase_resumes_across_the_phases_to_the_same_weights(
    whole_run: tuple[Path, Any, Any],
) -> None:
    """Killed after epoch 1 (first phase: the backbone bitwise as in the file), --resume crosses
    into the second phase and ends with bitwise the history and weights of the whole run; the
    finished run then trains on in its second phase."""
    folder, made, _ = whole_run
    run = killed_at_backup(folder, "first-phase", backup=2)
    state, weights_file = backup_state(run)
    assert (state["epoch"], state["phase"]) == (1, 1)
    after_first_phase = built_model(folder)
    after_first_phase.load_weights(weights_file, skip_mismatch=True)
    assert_same(after_first_phase.get_layer("backbone").get_weights(), made.get_weights())
    resumed = dlcli(folder, "train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch 1 of 3, from its backup\nFine-tuning: " in resumed.stderr
    assert_resumed_as_whole(run, folder / "runs" / "transfer-1")

    more = dlcli(folder, "train", "--resume", str(run), "--set", "fit.epochs=4")
    assert more.returncode == 0, more.stderr[-2000:]
    assert "Resuming after epoch 3 of 4, from its backup\nFine-tuning: " in more.stderr
    assert (run / "history.csv").read_text().splitlines()[-1].startswith("4,")


@pytest.mark.parametrize(
    ("fit", "message"),
    [
        (
            {"epochs": 1},
            "`fit.fine_tune.from_epoch` must be at most `fit.epochs` (1): the run's epochs are "
            "those of both phases. Received: 2 (spec.yaml, line 14)",
        ),
        (
            {"freeze": ["backbon"]},
            "`fit.fine_tune.unfreeze.layer`: `backbone` was not frozen in the first phase (did "
            "you mean `backbon`?); `fit.freeze` lists backbon (spec.yaml, line 17)",
        ),
        (
            {"freeze": []},
            "`fit.fine_tune.unfreeze.layer`: `backbone` was not frozen in the first phase; "
            "`fit.freeze` is empty: list it there (spec.yaml, line 17)",
        ),
        (
            {"fine_tune": {"from_epoch": 1, "unfreeze": "backbone", "learning_rate": 1.0e-5}},
            "`fit.fine_tune.from_epoch` must be greater than or equal to 2. Received: 1 "
            "(spec.yaml, line 14)",
        ),
        (
            {"fine_tune": {"from_epoch": 2, "unfreeze": "backbone"}},
            "`fit.fine_tune.learning_rate` is required but missing (spec.yaml, line 13)",
        ),
    ],
)
def test_phase_mistakes_are_one_line_before_tensorflow_loads(
    isolated: Path, fit: dict[str, Any], message: str
) -> None:
    (isolated / "spec.yaml").write_text(spec(**fit))
    (isolated / "photos").mkdir()
    (isolated / "backbone.weights.h5").write_bytes(b"")
    result = invoke(["validate", "spec.yaml"])
    assert result.exit_code == 3, result.output
    assert result.output == f"Error: {message}\n"


@pytest.mark.parametrize(
    ("freeze", "unfreeze", "message"),
    [
        (
            "backbone",
            {"layer": "backbone", "layers": 500},
            "`fit.fine_tune.unfreeze.layers` must be at most 87, the layers of `backbone`. "
            "Received: 500",
        ),
        (
            "head",
            {"layer": "head", "layers": 1},
            "`fit.fine_tune.unfreeze.layers`: `head` has no layers inside it to count; leave "
            "`layers` out to unfreeze it whole",
        ),
    ],
)
def test_layers_to_unfreeze_that_are_not_there_are_one_line_before_training(
    isolated: Path, freeze: str, unfreeze: dict[str, Any], message: str
) -> None:
    write_photos(isolated / "photos")
    write_backbone(isolated / "backbone.weights.h5")
    fine_tune = {"from_epoch": 2, "unfreeze": unfreeze, "learning_rate": 1e-5}
    (isolated / "spec.yaml").write_text(spec(freeze=[freeze], fine_tune=fine_tune))
    result = invoke(["train", "spec.yaml", "--quiet"])
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"
    assert not (isolated / "runs").exists() or not any((isolated / "runs").iterdir())
