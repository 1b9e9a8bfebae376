"""`dlcli train` end to end on tiny data: run directories, the artifact, data checks, exit codes."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dlcli.errors import ConfigError

from .helpers import CONFIGS, REPO, invoke

XOR = REPO / "configs" / "xor.yaml"


def train(*args: str) -> object:
    return invoke(["train", *map(str, args)])


@pytest.fixture(scope="module")
def xor_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    """The shipped XOR spec trained twice in one folder (module scope: trained once)."""
    folder = tmp_path_factory.mktemp("xor")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(folder)
    first, second = train(XOR), train(XOR, "--set", "fit.epochs=1")
    monkeypatch.undo()
    return folder, first, second


def test_xor_is_learned_and_saved(xor_runs: tuple[Path, object, object]) -> None:
    folder, result, _ = xor_runs
    assert result.exit_code == 0, result.output
    run_dir = folder / "runs" / "xor-1"
    assert "On the training data (no test split): accuracy 1.0000" in result.stdout
    assert "Run directory: runs/xor-1" in result.stdout
    assert "Training on CPU (no GPU found)" in result.stderr
    expected = {"spec.yaml", "model.keras", "history.csv", "metrics.json", "curves.png"}
    assert expected <= {p.name for p in run_dir.iterdir()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "train" and metrics["train"]["accuracy"] == 1.0
    assert metrics["epochs"] == 100
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,accuracy,loss") and len(history) == 101


def test_artifact_embeds_everything_predict_needs(xor_runs: tuple[Path, object, object]) -> None:
    folder, _, _ = xor_runs
    with zipfile.ZipFile(folder / "runs" / "xor-1" / "model.keras") as archive:
        assert {"config.json", "model.weights.h5", "dlcli.json"} <= set(archive.namelist())
        metadata = json.loads(archive.read("dlcli.json"))
    assert metadata["format"] == 1
    assert set(metadata["versions"]) == {"dlcli", "keras", "tensorflow"}
    assert metadata["task"] == "binary"
    assert metadata["spec"]["seed"] == 1 and metadata["spec"]["name"] == "xor"
    assert metadata["input"] == {
        "shape": [2],
        "dtype": "float32",
        "feature_names": None,
        "image": None,
    }
    assert metadata["dataset"]["sizes"] == {"train": 4, "test": 0}
    assert len(metadata["dataset"]["digest"]) == 64
    assert metadata["training"]["device"] == "CPU (no GPU found)"


def test_a_second_run_never_touches_the_first(xor_runs: tuple[Path, object, object]) -> None:
    folder, _, second = xor_runs
    assert second.exit_code == 0, second.output
    assert (folder / "runs" / "xor-2" / "model.keras").is_file()
    resolved = (folder / "runs" / "xor-2" / "spec.yaml").read_text()
    assert "epochs: 1\n" in resolved and "seed: 1\n" in resolved
    first = json.loads((folder / "runs" / "xor-1" / "metrics.json").read_text())
    assert first["epochs"] == 100


def test_seed_is_chosen_and_recorded_when_missing(tmp_path: Path) -> None:
    spec = tmp_path / "xor.yaml"
    spec.write_text(XOR.read_text().replace("seed: 1\n", ""))
    result = train(spec, "--set", "fit.epochs=1")
    assert result.exit_code == 0, result.output
    resolved = (tmp_path / "runs" / "xor-1" / "spec.yaml").read_text()
    assert "seed: " in resolved


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def npz_spec(tmp_path: Path, units: int = 3, loss: str = "sparse_categorical_crossentropy") -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: tiny\nseed: 0\ndataset:\n  npz: data.npz\nmodel:\n  input: [4]\n  layers:\n"
        f"    - Dense: {{units: {units}, activation: softmax}}\n"
        f"compile:\n  loss: {loss}\n  metrics: [accuracy]\nfit:\n  epochs: 1\n"
    )
    return spec


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x_train": np.zeros((6, 5)), "y_train": np.zeros(6)},
            "train data has examples of shape (5,) but the model input is (4,); change "
            "`model.input` to [5] or reshape the data",
        ),
        (
            {"x_train": np.zeros((6, 4)), "y_train": np.array([0, 1, 2, 3, 1, 7])},
            "train labels must be class indices 0..2 for a 3-unit output; 2 are not, "
            "the first is 3 at index 3",
        ),
        (
            {
                "x_train": np.array([[0, 0, 0, 0]] * 3 + [[0, np.nan, 0, 0]] * 2),
                "y_train": np.zeros(5),
            },
            "train data has 2 example(s) with NaN or Inf values; the first is index 3",
        ),
        (
            {"x_train": np.zeros((6, 4)), "y_train": np.zeros(5)},
            "data.npz: `x_train` has 6 rows but `y_train` has 5",
        ),
        (
            {"x_train": np.array([[1, 2, 3, 4]] * 2, dtype=object), "y_train": np.zeros(2)},
            "data.npz: `x_train` holds Python objects (pickle), which are refused; "
            "save plain numeric arrays",
        ),
        (
            {"features": np.zeros((6, 4)), "labels": np.zeros(6)},
            "data.npz: no `x_train`/`y_train` arrays; it holds features, labels "
            "(set dataset.npz.x_train/y_train)",
        ),
    ],
)
def test_data_problems_are_named_before_fit(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    write_npz(tmp_path / "data.npz", **arrays)
    result = train(npz_spec(tmp_path))
    assert result.exit_code == 4, result.output
    assert result.stderr.strip().endswith(message)
    assert result.stderr.count("\n") <= 4 and "Traceback" not in result.output


def test_missing_dataset_file(tmp_path: Path) -> None:
    result = train(npz_spec(tmp_path))
    assert result.exit_code == 4
    assert f"Error: dataset file not found: {tmp_path / 'data.npz'}" in result.stderr


def test_spec_error_exit_code_and_debug_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(XOR.read_text().replace("epochs: 100", "epochs: 0"))
    result = train(spec)
    assert result.exit_code == 3
    assert result.stderr == (
        f"Error: `fit.epochs` must be greater than 0. Received: 0 ({spec}, line 19)\n"
    )
    assert not (tmp_path / "runs").exists()
    debug = invoke(["--debug", "train", str(spec)])
    assert isinstance(debug.exception, ConfigError)


def test_unwritable_output_folder_is_reported_before_training(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("a file, not a folder")
    result = train(XOR)
    assert result.exit_code == 11
    assert "Error: cannot create" in result.stderr and "runs" in result.stderr


def few_photos(folder: Path, copy: Path, per_class: int = 12) -> Path:
    """The first `per_class` photos of each class folder of `folder`, copied under `copy`."""
    for class_folder in sorted(path for path in folder.iterdir() if path.is_dir()):
        (copy / class_folder.name).mkdir(parents=True)
        for photo in sorted(class_folder.iterdir())[:per_class]:
            shutil.copy(photo, copy / class_folder.name / photo.name)
    return copy


@pytest.mark.usefixtures("fake_keras_datasets")
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_shipped_config_trains(config: Path, isolated: Path) -> None:
    """Every file in configs/ (the list is read from the folder, so a new config is started
    here too) trains for one epoch (one of each phase for a config that fine-tunes in two) on
    synthetic stand-ins of its dataset's shape, or on a few photos of each class of its own
    photo folders (the whole folders: `test_the_photo_config_trains_on_its_whole_folders`)."""
    spec = yaml.safe_load(config.read_text())
    quick = ["--set", "fit.epochs=1"]
    if "fine_tune" in spec["fit"]:
        quick = ["--set", "fit.epochs=2", "--set", "fit.fine_tune.from_epoch=2"]
    for split, folder in (spec["dataset"].get("images") or {}).items():
        if split in ("train", "validation", "test"):
            few = few_photos(config.parent / folder, isolated / "few" / split)
            quick += ["--set", f"dataset.images.{split}={few}"]
    result = train(config, *quick)
    assert result.exit_code == 0, result.output
    run_dir = Path("runs") / f"{spec['name']}-1"
    metadata = json.loads(zipfile.ZipFile(run_dir / "model.keras").read("dlcli.json"))
    assert metadata["spec"]["name"] == spec["name"]
    ignored = f"{config}: the `search:` section is for `dlcli tune`; training without it"
    assert (ignored in result.output) == ("search" in spec)  # configs/mnist_tune.yaml has one
    assert (run_dir / "curves.png").stat().st_size > 1000
    if metadata["task"] in ("multiclass", "binary"):
        assert (run_dir / "confusion_matrix.png").is_file()


@pytest.mark.slow
def test_the_photo_config_trains_on_its_whole_folders() -> None:
    """configs/photos_transfer.yaml, one epoch of each phase on all of its photos."""
    config = REPO / "configs" / "photos_transfer.yaml"
    result = train(config, "--set", "fit.epochs=2", "--set", "fit.fine_tune.from_epoch=2")
    assert result.exit_code == 0, result.output
    assert "Data: data/textures/train (train 461, test 192, validation 115)" in result.stderr
    assert "Fine-tuning: `backbone` trained" in result.stderr


@pytest.mark.parametrize(
    ("examples", "batch_size", "expected"),
    [(4, 4, 1), (1200, 100, 2), (60000, 128, 78), (59776, 128, 93), (119936, 128, 128)],
)
def test_auto_steps_per_execution_leaves_the_partial_batch_on_its_own(
    examples: int, batch_size: int, expected: int
) -> None:
    """MNIST: 468 full batches and one of 96, 78 steps per execution; 467 and 937 are prime."""
    from dlcli.train.loop import steps_per_execution

    assert steps_per_execution("auto", examples, batch_size) == expected
    assert steps_per_execution(5, examples, batch_size) == 5


@pytest.mark.parametrize(("per_execution", "stacked"), [(2, [2, 1]), (3, [3, 0])])
def test_training_pipeline_serves_every_example_once_per_epoch(
    per_execution: int, stacked: list[int]
) -> None:
    """Executions of full batches, the partial batch last, as Keras batches; new order per epoch."""
    from dlcli.train.loop import executions

    x = np.arange(10, dtype="uint8")[:, None] * np.ones((1, 3), dtype="uint8")
    y = np.arange(10, dtype="uint8")
    iterator = iter(executions((x, y), 3, True, per_execution))  # 3 full batches and 1 example
    epochs = []
    for _ in range(3):
        executions = [next(iterator) for _ in range(2)]
        assert [tuple(xs.shape) for xs, *_ in executions] == [(n, 3, 3) for n in stacked]
        assert [len(y_rest) for *_, y_rest in executions] == [0, 1]
        labels = np.concatenate(
            [np.append(ys.numpy().ravel(), rest) for _, ys, _, rest in executions]
        )
        pixels = np.concatenate(
            [np.concatenate([xs.numpy().reshape(-1, 3), rest]) for xs, _, rest, _ in executions]
        )
        assert sorted(labels) == list(range(10)) and (pixels[:, 0] == labels).all()
        epochs.append(list(labels))
    assert len({tuple(order) for order in epochs}) == 3


@pytest.mark.parametrize(
    ("jit_compile", "per_execution", "weighted"),
    [(False, 3, False), (True, 4, False), (False, 3, True)],
)
def test_compiled_executions_train_as_kerass_own_loop(
    jit_compile: bool, per_execution: int, weighted: bool
) -> None:
    """Same batches, same steps, same weights and logs: only how each execution runs differs.
    With sample weights (fit.class_weight, dataset.csv.weight) too."""
    import keras

    from dlcli.model.build import create_training_variables
    from dlcli.train.loop import training_data

    x = np.random.default_rng(0).random((50, 4), dtype="float32")  # 6 full batches of 8, then 2
    y = (x.sum(axis=1) > 2).astype("float32")
    weights = np.random.default_rng(1).choice([0.0, 0.5, 2.0], 50).astype("float32")
    weights = weights if weighted else None

    def trained(compiled: bool) -> tuple[Any, dict[str, list[float]]]:
        keras.utils.set_random_seed(1)
        model = keras.Sequential(  # with state beyond the weights: moving statistics, seeds
            [
                keras.Input((4,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.BatchNormalization(),
                keras.layers.Dropout(0.3),
                keras.layers.Dense(1),
            ]
        )
        model.compile(
            optimizer="rmsprop",
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=jit_compile,
            steps_per_execution=per_execution,
        )
        create_training_variables(model, x, y)
        data = (
            training_data(model, x, y, 8, False, replicas=1, weights=weights)
            if compiled
            else {"x": x, "y": y, "batch_size": 8, "shuffle": False, "sample_weight": weights}
        )
        calls = []
        if compiled:
            run = model.train_function
            model.train_function = lambda iterator: calls.append(1) or run(iterator)
        history = model.fit(**data, epochs=3, verbose=0).history
        assert int(model.optimizer.iterations) == 3 * 7
        executions = -(-7 // per_execution)  # 7 steps: (3, 3, 1) or (4, 3) an epoch
        assert len(calls) == (3 * executions if compiled else 0)
        return model, history

    (keras_model, keras_history), (model, history) = trained(False), trained(True)
    assert history.keys() == keras_history.keys()
    for key in history:
        np.testing.assert_allclose(history[key], keras_history[key], rtol=1e-5)
    for ours, theirs in zip(model.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_training_variables_exist_before_fit_so_the_step_is_traced_once() -> None:
    import keras

    from dlcli.model.build import create_training_variables

    x = np.random.default_rng(0).random((64, 3), dtype="float32")
    y = (x.sum(axis=1) > 1.5).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    create_training_variables(model, x, y)
    assert model.optimizer.built and len(model.optimizer.variables) > 2  # velocities too
    assert model.compute_metrics(x, y, model(x))["accuracy"] > 0  # built, and states counted
    model.reset_metrics()
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert len(traces) == 1  # without the variables made beforehand, TensorFlow traces it twice
    assert len(history.history["loss"]) == 2
