"""Tests of dlcli.model.checks: labels against the loss, output and metrics; the channel axis.

The tables call the checks directly; the end-to-end tests run `dlcli train` in a subprocess
(empty HOME and cache) and assert that a mistake ends in one line, exit 4, before fit.
"""

from __future__ import annotations

import doctest
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

import dlcli.model.checks
import dlcli.model.signature
from dlcli.data.common import DatasetInfo, ImageInfo, Split, Splits
from dlcli.errors import ConfigError, DataError
from dlcli.model.checks import add_channel_axis, check_labels, check_metrics
from dlcli.model.signature import Output, loss_name, task_for, task_of, tasks_of
from dlcli.spec.schema import CompileSpec, KerasObject

from .helpers import Ran, invoke, run_cli, tiny_spec, write_tiny_data

CLASSES = np.array([0, 2, 1, 2])
ONE_HOT = np.eye(3)[CLASSES]
SOFTMAX = Output("dense", (3,), "softmax")
SIGMOID_3 = Output("dense", (3,), "sigmoid")
TANH_1 = Output("dense", (1,), "tanh")
SIGMOID_1 = Output("dense", (1,), "sigmoid")


@pytest.mark.parametrize(
    ("loss", "output", "labels", "message"),
    [
        (
            "categorical_crossentropy",
            SOFTMAX,
            CLASSES,
            "train labels hold one class index per example (shape (4,)), but "
            "categorical_crossentropy takes one-hot labels of shape (n, 3); integer class labels "
            "need sparse_categorical_crossentropy (or one-hot labels for categorical_crossentropy)",
        ),
        (
            "categorical_focal_crossentropy",
            SOFTMAX,
            CLASSES[:, None],
            "train labels hold one class index per example (shape (4, 1)), but "
            "categorical_focal_crossentropy takes one-hot labels of shape (n, 3); integer class "
            "labels need sparse_categorical_crossentropy (or one-hot labels for "
            "categorical_crossentropy)",
        ),
        (
            "sparse_categorical_crossentropy",
            SOFTMAX,
            ONE_HOT,
            "train labels are one-hot (shape (4, 3)), but sparse_categorical_crossentropy takes "
            "one class index per example; one-hot labels need categorical_crossentropy (or class "
            "indices 0..2 for sparse_categorical_crossentropy)",
        ),
        (
            "binary_crossentropy",
            SOFTMAX,
            CLASSES,
            "3 classes with softmax need (sparse_)categorical_crossentropy, not "
            "binary_crossentropy: sparse_categorical_crossentropy for class indices such as the "
            "train labels (shape (4,)), categorical_crossentropy for one-hot labels",
        ),
        (
            "binary_crossentropy",
            SIGMOID_3,
            CLASSES,
            "train labels hold one value per example (shape (4,)), but binary_crossentropy with a "
            "3-unit output takes one 0/1 column per unit, shape (n, 3); for one class per example "
            "use a softmax output with sparse_categorical_crossentropy",
        ),
        (
            "binary_crossentropy",
            SIGMOID_1,
            CLASSES,
            "train labels must be between 0 and 1 for binary classification; 2 are not, the "
            "first at index 1",
        ),
        (
            "hinge",
            TANH_1,
            np.array([1, -1, 2, 1]),
            "train labels must be -1 and 1 (or 0 and 1) for hinge; 1 are not, the first at index 2",
        ),
        (
            "squared_hinge",
            TANH_1,
            np.array([1, 0, -1, 1]),
            "train labels must be -1 and 1 (or 0 and 1) for squared_hinge; 1 are not, the first "
            "at index 1",
        ),
        (
            "sparse_categorical_crossentropy",
            SOFTMAX,
            np.array([0, 1, 3, 1.5]),
            "train labels must be class indices 0..2 for a 3-unit output; 2 are not, the first "
            "is 3.0 at index 2",
        ),
        (
            "crossentropy",
            SOFTMAX,
            np.array([0, 1, 3, 1]),
            "train labels must be class indices 0..2 for a 3-unit output; 1 are not, the first "
            "is 3 at index 2",
        ),
        (
            "mean_squared_error",
            SOFTMAX,
            CLASSES,
            "train labels hold one value per example (shape (4,)), but the model's output has 3 "
            "units; for class labels use sparse_categorical_crossentropy with a softmax output, "
            "for one target per example make the last layer `units: 1`",
        ),
        (
            "categorical_crossentropy",
            SOFTMAX,
            np.eye(4),
            "train labels have 4 columns but the model's output has 3 unit(s); make the last "
            "layer `units: 4`",
        ),
    ],
)
def test_labels_the_loss_cannot_take_name_the_fix(
    loss: str, output: Output, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(DataError) as raised:
        check_labels("train", labels, loss, output)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("loss", "output", "labels"),
    [
        ("hinge", TANH_1, np.array([1, -1, -1, 1])),
        ("hinge", TANH_1, np.array([[1], [0], [0], [1]])),
        ("squared_hinge", TANH_1, np.array([-1.0, 1.0])),
        ("hinge", SIGMOID_3, np.array([[1, -1, 1], [-1, -1, 1]])),
        ("sparse_categorical_crossentropy", SOFTMAX, CLASSES),
        ("sparse_categorical_crossentropy", SOFTMAX, CLASSES[:, None].astype("uint8")),
        ("categorical_crossentropy", SOFTMAX, ONE_HOT),
        ("crossentropy", SOFTMAX, CLASSES),
        ("crossentropy", SOFTMAX, ONE_HOT),
        ("binary_crossentropy", SIGMOID_1, np.array([0.0, 1.0, 0.25])),
        ("binary_crossentropy", SIGMOID_3, (ONE_HOT + np.eye(3)[[1, 1, 1, 0]]).clip(0, 1)),
        ("binary_crossentropy", SOFTMAX, ONE_HOT),
        ("mean_squared_error", TANH_1, np.array([0.5, -3.0])),
        ("mean_squared_error", SIGMOID_3, ONE_HOT * 2.5),
        ("sparse_categorical_crossentropy", Output("seq", (5, 3), "softmax"), np.zeros((2, 5))),
    ],
)
def test_labels_the_loss_takes(loss: str, output: Output, labels: np.ndarray) -> None:
    check_labels("train", labels, loss, output)


@pytest.mark.parametrize(
    ("written", "units", "name", "task"),
    [
        ("SparseCategoricalCrossentropy", 10, "sparse_categorical_crossentropy", "multiclass"),
        ("sparse_categorical_crossentropy", 10, "sparse_categorical_crossentropy", "multiclass"),
        ("CategoricalCrossentropy", 3, "categorical_crossentropy", "multiclass"),
        ("CategoricalHinge", 3, "categorical_hinge", "multiclass"),
        ("bce", 1, "binary_crossentropy", "binary"),
        ("BinaryFocalCrossentropy", 4, "binary_focal_crossentropy", "multilabel"),
        ("hinge", 1, "hinge", "binary"),
        ("SquaredHinge", 2, "squared_hinge", "multilabel"),
        ("crossentropy", 1, "crossentropy", "binary"),
        ("ce", 5, "crossentropy", "multiclass"),
        ("mse", 1, "mean_squared_error", "regression"),
        ("MeanAbsoluteError", 2, "mean_absolute_error", "regression"),
        ("plugin>MyLoss", 3, "plugin>MyLoss", "regression"),
    ],
)
def test_the_task_comes_from_the_loss_keras_resolves(
    written: str, units: int, name: str, task: str
) -> None:
    assert loss_name(KerasObject(class_name=written)) == name
    assert task_for(name, units) == task


def graph_model(outputs: int) -> Any:
    import keras

    inputs = keras.Input((4,), name="x")
    heads = [
        keras.layers.Dense(1, activation="sigmoid", name=f"p{index}")(inputs)
        for index in range(outputs)
    ]
    return keras.Model(inputs, heads if outputs > 1 else heads[0])


def test_a_loss_per_output_name_gives_that_outputs_task() -> None:
    loss = {"p0": KerasObject(class_name="binary_crossentropy")}
    assert task_of(loss, graph_model(1)) == "binary"  # was "regression", silently
    two = {**loss, "p1": KerasObject(class_name="mse")}
    assert tasks_of(two, graph_model(2)) == {"p0": "binary", "p1": "regression"}
    with pytest.raises(ConfigError) as raised:
        task_of(two, graph_model(2))
    assert str(raised.value) == "the model has 2 outputs (`p0`, `p1`); expected one"


@pytest.mark.parametrize(
    ("metric", "output", "labels", "message"),
    [
        (
            {"AUC": {}},
            SOFTMAX,
            CLASSES,
            "the metric `AUC` needs one-hot labels for a 3-unit output (or 0/1 labels with a "
            "1-unit sigmoid output), but the train labels hold one class index per example "
            "(shape (4,)); "
            "give one-hot labels with categorical_crossentropy, or remove `AUC` from "
            "`compile.metrics`",
        ),
        (
            {"AUC": {"multi_label": True}},
            SOFTMAX,
            CLASSES,
            "the metric `AUC` needs one-hot labels for a 3-unit output (or 0/1 labels with a "
            "1-unit sigmoid output), but the train labels hold one class index per example "
            "(shape (4,)); "
            "give one-hot labels with categorical_crossentropy, or remove `AUC` from "
            "`compile.metrics`",
        ),
        (
            "Precision",
            SOFTMAX,
            CLASSES,
            "the metric `Precision` needs one-hot labels for a 3-unit output (or 0/1 labels with a "
            "1-unit sigmoid output), but the train labels hold one class index per example (shape "
            "(4,)); give one-hot labels with categorical_crossentropy, or remove `Precision` from "
            "`compile.metrics`",
        ),
        (
            "F1Score",
            SIGMOID_1,
            np.array([0, 1, 1, 0]),
            "the metric `F1Score` cannot take the train labels (shape (4,)) with the model's "
            "output (shape (None, 1)): FBetaScore expects 2D inputs with shape "
            "(batch_size, output_dim). "
            "Received input shapes: y_pred.shape=(4, 1) and y_true.shape=(4,).; change the labels "
            "or remove `F1Score` from `compile.metrics`",
        ),
    ],
)
def test_metrics_that_cannot_take_the_labels(
    metric: Any, output: Output, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(DataError) as raised:
        check_metrics("train", labels, [KerasObject.model_validate(metric)], output)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("metrics", "output", "labels"),
    [
        (["accuracy", "crossentropy", {"AUC": {}}, "Precision"], SOFTMAX, ONE_HOT),
        (["AUC", "binary_accuracy", "mae"], SIGMOID_1, np.array([0, 1, 1, 0])),
        (["accuracy", "sparse_top_k_categorical_accuracy"], SOFTMAX, CLASSES),
    ],
)
def test_metrics_that_take_the_labels(
    metrics: list[Any], output: Output, labels: np.ndarray
) -> None:
    check_metrics("train", labels, [KerasObject.model_validate(m) for m in metrics], output)


class InputOnly:
    """What add_channel_axis reads of a model: its input's shape."""

    def __init__(self, *shape: int | None) -> None:
        self.inputs = [SimpleNamespace(name="x", shape=(None, *shape))]


def splits_of(x: np.ndarray, image: ImageInfo | None = None) -> Splits:
    train = Split(x, np.zeros(len(x), "int64"))
    info = DatasetInfo(source="data.npz", image=image, digest="abc")
    return Splits(train, train, Split(x[:1], np.zeros(1, "int64")), True, info)


def test_single_channel_images_get_the_channel_axis_the_model_takes() -> None:
    x = np.arange(2 * 8 * 8, dtype="uint8").reshape(2, 8, 8)
    expanded = add_channel_axis(splits_of(x), InputOnly(8, 8, 1))
    assert expanded.train.x.shape == (2, 8, 8, 1) and expanded.test.x is expanded.train.x
    assert expanded.validation is not None and expanded.validation.x.shape == (1, 8, 8, 1)
    assert np.shares_memory(expanded.train.x, x)  # a view, not a copy
    assert expanded.info == DatasetInfo(source="data.npz", image=ImageInfo(8, 8, 1), digest="abc")
    mnist = ImageInfo(8, 8, 1, "light_on_dark", "mnist")
    assert add_channel_axis(splits_of(x, mnist), InputOnly(None, None, 1)).info.image == mnist
    features = np.zeros((2, 4), "float32")
    assert add_channel_axis(splits_of(features), InputOnly(4, 1)).info.image is None
    for unchanged in [InputOnly(8, 8), InputOnly(8, 8, 3), InputOnly(4, 4, 1)]:
        kept = splits_of(x)
        assert add_channel_axis(kept, unchanged) is kept


def test_check_examples_gives_evaluate_the_channel_axis_and_the_label_checks() -> None:
    import keras

    from dlcli.model.checks import check_examples

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    images = np.zeros((4, 8, 8), "uint8")
    loss = CompileSpec(loss=KerasObject(class_name="SparseCategoricalCrossentropy"))
    assert check_examples("test.npz", images, CLASSES, model, loss).shape == (4, 8, 8, 1)
    with pytest.raises(DataError) as raised:
        check_examples("test.npz", np.zeros((4, 9, 8)), CLASSES, model, loss)
    assert str(raised.value) == (
        "test.npz: examples have shape (9, 8) but the model takes (8, 8, 1)"
    )
    with pytest.raises(DataError) as raised:
        check_examples("test.npz", images, ONE_HOT, model, loss)
    assert str(raised.value).startswith("test.npz labels are one-hot (shape (4, 3)), but ")


def test_docstring_examples() -> None:
    assert doctest.testmod(dlcli.model.checks).failed == 0
    assert doctest.testmod(dlcli.model.signature).failed == 0


# ---------------------------------------------------------------------------------------------
# Through the CLI

SPEC = tiny_spec(compile={"optimizer": None}, fit={"batch_size": None})
CONVNET = """name: conv
seed: 0
dataset:
  npz: images.npz
  validation_split: 0.25
model:
  input: [8, 8, 1]
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - Flatten
    - Dense: {units: 3, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 2
  batch_size: 4
"""


def run_here(folder: Path, *arguments: str) -> Ran:
    """`dlcli ARGUMENTS` as a user runs it in `folder`, with an empty HOME (the cache
    holds only the Keras catalog)."""
    return run_cli(arguments, None, folder, timeout=300)


def write_data(folder: Path) -> None:
    write_tiny_data(folder, 12, label=lambda x: np.arange(len(x)) % 3, spec=SPEC)
    (folder / "table.csv").write_text("a,label\n1,0\n2,99999999999999999999999\n")
    (folder / "text.npz").write_text("a,label\n1,0\n")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--set", "compile.loss=categorical_crossentropy"],
            "Error: train labels hold one class index per example (shape (12,)), but "
            "categorical_crossentropy takes one-hot labels of shape (n, 3); integer class labels "
            "need sparse_categorical_crossentropy (or one-hot labels for categorical_crossentropy)",
        ),
        (
            ["--set", "compile.metrics=[accuracy, {AUC: {}}]"],
            "Error: the metric `AUC` needs one-hot labels for a 3-unit output (or 0/1 labels with "
            "a 1-unit sigmoid output), but the train labels hold one class index per example "
            "(shape (12,)); give one-hot labels with categorical_crossentropy, or remove `AUC` "
            "from `compile.metrics`",
        ),
        (
            ["--set", "compile.loss=BinaryCrossentropy"],
            "Error: 3 classes with softmax need (sparse_)categorical_crossentropy, not "
            "binary_crossentropy: sparse_categorical_crossentropy for class indices such as the "
            "train labels (shape (12,)), categorical_crossentropy for one-hot labels",
        ),
        (
            ["--set", "dataset.npz=text.npz"],
            "Error: text.npz: not an .npz file; expected a zip archive of arrays, as "
            "numpy.savez writes",
        ),
        (
            ["--set", "dataset={csv: {train: table.csv}}"],
            "Error: table.csv, line 3: the label `99999999999999999999999` does not fit "
            "a class index (a 64-bit integer); integer labels are class indices 0, 1, 2, ...",
        ),
    ],
    ids=["categorical", "auc", "binary", "text npz", "csv overflow"],
)
def test_train_refuses_before_fit_in_one_line(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    write_data(tmp_path)
    result = run_here(tmp_path, "train", "spec.yaml", *arguments)
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines()[-1] == message
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("runs/*/history.csv"))  # refused before fit


def images_npz(folder: Path) -> None:
    """12 single-channel 8x8 images (n, 8, 8) of three classes: a bright row 0, 3 or 6."""
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 3
    x = rng.integers(0, 40, size=(12, 8, 8)).astype("uint8")
    x[np.arange(12), labels * 3] = 255
    np.savez(folder / "images.npz", x_train=x, y_train=labels)
    (folder / "conv.yaml").write_text(CONVNET)
    image = np.zeros((8, 8), "uint8")
    image[6] = 255
    Image.fromarray(image).save(folder / "row6.png")


def model_info(model: Path) -> dict[str, Any]:
    with zipfile.ZipFile(model) as archive:
        return json.loads(archive.read("dlcli.json"))


def test_a_convnet_input_with_one_channel_trains_on_2d_images_in_process(tmp_path: Path) -> None:

    images_npz(tmp_path)
    result = invoke(["train", str(tmp_path / "conv.yaml")])
    assert result.exit_code == 0, result.output
    (model,) = tmp_path.glob("runs/conv-*/model.keras")
    described = model_info(model)["input"]
    assert described["shape"] == [8, 8, 1]
    assert described["image"]["channels"] == 1
    assert (described["image"]["height"], described["image"]["width"]) == (8, 8)


def test_a_convnet_input_with_one_channel_trains_and_predicts_through_the_cli(
    tmp_path: Path,
) -> None:
    images_npz(tmp_path)
    trained = run_here(tmp_path, "train", "conv.yaml")
    assert trained.returncode == 0, trained.stderr
    (model,) = tmp_path.glob("runs/conv-*/model.keras")
    predicted = run_here(tmp_path, "predict", "row6.png", "--model", str(model), "--json")
    assert predicted.returncode == 0, predicted.stderr
    (prediction,) = json.loads(predicted.stdout)["predictions"]
    assert prediction["input"] == "row6.png"
    assert sorted(item["label"] for item in prediction["top_k"]) == ["0", "1", "2"]
