"""Starting from trained weights (`fit.initial_weights`, `dlcli train --from MODEL`),
freezing layers (`fit.freeze`), and more epochs for a finished run, through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .helpers import FINISHED_RUN_FILES, Ran, invoke, run_cli, tiny_spec, write_tiny_data

HIDDEN = {"Dense": {"units": 8, "activation": "relu", "name": "hidden"}}
HEAD = {"Dense": {"units": 3, "activation": "softmax", "name": "head"}}
TRAINING = {"compile": {"optimizer": None}, "fit": {"epochs": 3, "batch_size": 16}}
SOURCE = tiny_spec(
    name="source",
    model={"layers": [HIDDEN, HEAD]},
    **TRAINING,
)
# the same hidden layer, a new head of another name and size, the hidden layer frozen
TUNED = tiny_spec(
    name="tuned",
    model={
        "layers": [HIDDEN, {"Dense": {"units": 3, "activation": "softmax", "name": "new_head"}}]
    },
    compile={"optimizer": None},
    fit={"epochs": 3, "batch_size": 16, "freeze": ["hidden"]},
)


def dlcli(folder: Path, *arguments: str) -> Ran:
    """`dlcli ARGUMENTS` in `folder`, with an empty HOME."""
    return run_cli(arguments, None, folder, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with data, the source spec trained (runs/source-1) and the tuned spec."""
    folder = tmp_path_factory.mktemp("fine-tuning")
    write_tiny_data(folder, 200, test_rows=40, classes=3)
    (folder / "source.yaml").write_text(SOURCE)
    (folder / "tuned.yaml").write_text(TUNED)
    result = dlcli(folder, "train", "source.yaml")
    assert result.returncode == 0, result.stderr
    return folder


def layer_weights(model: Path, name: str) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(model).get_layer(name).get_weights()


def test_from_a_model_copies_weights_by_name_and_frozen_layers_stay(trained: Path) -> None:
    result = dlcli(trained, "train", "tuned.yaml", "--from", "runs/source-1/model.keras")
    assert result.returncode == 0, result.stderr
    assert (
        f"Initial weights from {trained / 'runs/source-1/model.keras'}: hidden; not in it, so "
        "trained from scratch: new_head\n"
    ) in result.stderr
    source, tuned = trained / "runs/source-1/model.keras", trained / "runs/tuned-1/model.keras"
    for before, after in zip(
        layer_weights(source, "hidden"), layer_weights(tuned, "hidden"), strict=True
    ):
        np.testing.assert_array_equal(before, after)  # copied, then frozen
    # the record of where the weights came from: the run's spec
    assert (
        f"initial_weights: {trained / 'runs/source-1/model.keras'}\n"
        in (trained / "runs/tuned-1/spec.yaml").read_text()
    )


def test_initial_weights_in_the_spec_are_relative_to_the_spec(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a freeze, every layer trains on from the copied weights."""
    monkeypatch.chdir(trained)
    (trained / "specs").mkdir(exist_ok=True)
    spec = tiny_spec(
        name="again",
        dataset={"npz": "../data.npz"},
        model={"layers": [HIDDEN, HEAD]},
        compile={"optimizer": None},
        fit={"epochs": 3, "batch_size": 16, "initial_weights": "../runs/source-1/model.keras"},
    )
    (trained / "specs" / "again.yaml").write_text(spec)
    result = invoke(["train", "specs/again.yaml", "--set", "fit.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "Initial weights from " in result.stderr and ": hidden, head\n" in result.stderr


@pytest.mark.parametrize(
    ("change", "exit_code", "message"),
    [
        (
            (
                "units: 8, activation: relu, name: hidden",
                "units: 5, activation: relu, name: hidden",
            ),
            3,
            "`fit.initial_weights`: layer `hidden` has weights of shape (4, 8), (8,) in {model} "
            "but (4, 5), (5,) in this spec's model; give the layer another `name:` to start it "
            "fresh",
        ),
        (
            ("freeze: [hidden]", "freeze: [hiden]"),
            3,
            "`fit.freeze[0]`: no layer `hiden` (did you mean `hidden`?); the layers are hidden, "
            "new_head",
        ),
        (
            ("freeze: [hidden]", "freeze: [hidden, new_head]"),
            3,
            "`fit.freeze`: every layer with weights is frozen: nothing would train",
        ),
    ],
)
def test_a_start_that_does_not_fit_is_one_line(
    trained: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: tuple[str, str],
    exit_code: int,
    message: str,
) -> None:
    monkeypatch.chdir(trained)
    (trained / "wrong.yaml").write_text(TUNED.replace(*change))
    result = invoke(["train", "wrong.yaml", "--from", "runs/source-1/model.keras"])
    assert result.exit_code == exit_code, result.output
    model = trained / "runs/source-1/model.keras"
    assert result.stderr.splitlines()[-1] == f"Error: {message.format(model=model)}"


def test_a_missing_start_model_is_refused_before_tensorflow_loads(trained: Path) -> None:
    code = (
        "import sys; from dlcli.cli.app import app\n"
        "try: app(['train', 'tuned.yaml', '--from', 'runs/none.keras'])\n"
        "except SystemExit as end: print(end.code, 'tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=trained, capture_output=True, text=True, check=False
    )
    assert result.stdout == "6 False\n", result.stderr
    assert result.stderr == f"Error: model file not found: {trained / 'runs/none.keras'}\n"


def test_a_finished_run_trains_on_for_more_epochs_in_its_folder(trained: Path) -> None:
    run = Path(shutil.copytree(trained / "runs/source-1", trained / "runs/source-9"))
    history = (run / "history.csv").read_text()
    result = dlcli(trained, "train", "--resume", "runs/source-9", "--set", "fit.epochs=5")
    assert result.returncode == 0, result.stderr
    assert "Resuming after epoch 3 of 5, from its backup\n" in result.stderr
    longer = (run / "history.csv").read_text()
    assert longer.startswith(history)  # the first three epochs as they were
    assert [line.split(",")[0] for line in longer.splitlines()[1:]] == ["1", "2", "3", "4", "5"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 5
    assert "  epochs: 5\n" in (run / "spec.yaml").read_text()
    assert json.loads((run / "run.json").read_text())["overrides"] == ["fit.epochs=5"]
    assert sorted(path.name for path in run.iterdir()) == FINISHED_RUN_FILES
    # the weights went on from the saved ones (from scratch, the loss would jump back up)
    losses = [float(line.split(",")[2]) for line in longer.splitlines()[1:]]
    assert losses[3] < losses[2]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "fit.epochs=2",
            "--resume runs/source-1 --set fit.epochs=2: the run asks for 3 epochs "
            "already; give more to train on",
        ),
        (
            "fit.batch_size=4",
            "--resume continues runs/source-1 with its own spec.yaml, so "
            "`--set fit.batch_size=4` cannot be applied (only --set fit.epochs=N, to train on); to "
            "change the spec, edit the spec file and add --restart",
        ),
    ],
)
def test_only_more_epochs_go_with_resume(
    trained: Path, monkeypatch: pytest.MonkeyPatch, setting: str, message: str
) -> None:
    monkeypatch.chdir(trained)
    before = (trained / "runs/source-1/run.json").read_text()
    result = invoke(["train", "--resume", "runs/source-1", "--set", setting])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: {message}\n"
    assert (trained / "runs/source-1/run.json").read_text() == before
