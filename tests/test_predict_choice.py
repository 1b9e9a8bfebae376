"""predict without --model: the newest model in runs/ that takes the inputs, from dlcli.json
alone; and a plain Keras model's logits shown as probabilities."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.errors import ModelFileError
from dlcli.inference import pick_model

from .helpers import (
    IMAGE,
    TinyModels,
    bar_image,
    classifier_document,
    invoke,
    with_dlcli_json,
)


def image_document(height: int, width: int, channels: int) -> dict[str, object]:
    shape = [height, width] if channels == 1 else [height, width, channels]
    image = {**IMAGE, "height": height, "width": width, "channels": channels}
    return classifier_document(
        input={"shape": shape, "dtype": "uint8", "feature_names": None, "image": image}
    )


def table_document() -> dict[str, object]:
    return classifier_document(
        input={"shape": [2], "dtype": "float32", "feature_names": ["a", "b"], "image": None}
    )


@pytest.fixture
def runs(classifier: Path, isolated: Path) -> Path:
    """runs/ with, newest first: 64x64 RGB photos, rows of a and b, 28x28 grayscale digits."""
    documents = {
        "photos-1": image_document(64, 64, 3),
        "table-1": table_document(),
        "digits-1": image_document(28, 28, 1),
    }
    for age, (name, document) in enumerate(documents.items()):
        (isolated / "runs" / name).mkdir(parents=True)
        path = with_dlcli_json(classifier, isolated / "runs" / name / "model.keras", document)
        os.utime(path, (2e9 - age, 2e9 - age))
    return isolated / "runs"


def choose(*names: str) -> tuple[str, str]:
    checked, takes = pick_model.choose_model([Path(name) for name in names], Path("runs"))
    return checked.path.parent.name, takes


def test_images_go_to_the_model_of_their_size_and_colours(runs: Path) -> None:
    Image.new("L", (28, 28)).save("digit.png")
    Image.new("RGB", (28, 28)).save("digit-in-rgb.png")
    Image.new("RGB", (300, 200)).save("photo.jpg")
    Image.new("L", (300, 200)).save("scan.png")
    assert choose("digit.png") == ("digits-1", "28x28 grayscale images")
    assert choose("digit-in-rgb.png") == ("digits-1", "28x28 grayscale images")  # the size
    assert choose("photo.jpg") == ("photos-1", "64x64 RGB images")  # the colours
    assert choose("scan.png") == ("digits-1", "28x28 grayscale images")


def test_rows_go_to_the_model_of_their_features(runs: Path) -> None:
    Path("named.csv").write_text("b,a\n1,2\n")
    Path("plain.csv").write_text("1,2\n3,4\n")
    np.save("rows.npy", np.zeros((3, 2)))
    for name in ("named.csv", "plain.csv", "rows.npy"):
        assert choose(name) == ("table-1", "rows of 2 features")


def test_inputs_no_model_takes_are_one_line(runs: Path) -> None:
    Path("wide.csv").write_text("1,2,3,4,5\n")
    with pytest.raises(ModelFileError) as caught:
        choose("wide.csv")
    assert str(caught.value) == (
        "no model in runs/ takes rows of 5 values: runs/photos-1/model.keras takes 64x64 RGB "
        "images; runs/table-1/model.keras takes rows of 2 features; runs/digits-1/model.keras "
        "takes 28x28 grayscale images; pass --model PATH"
    )
    shutil.rmtree(runs / "table-1")
    Image.new("RGB", (28, 28)).save("digit.png")
    (runs / "digits-1" / "model.keras").unlink()
    with pytest.raises(ModelFileError, match=r"^no model in runs/ takes rows of 5 values: "):
        choose("wide.csv")
    assert choose("digit.png") == ("photos-1", "64x64 RGB images")


def test_through_the_cli_the_choice_is_said(tiny_models: TinyModels) -> None:
    for name, model, written in (
        ("bars-1", tiny_models.bars, 1e9),
        ("answer-1", tiny_models.answer, 2e9),
    ):
        (Path("runs") / name).mkdir(parents=True)
        shutil.copy(model, Path("runs") / name / "model.keras")
        os.utime(Path("runs") / name / "model.keras", (written, written))
    bar_image(1, np.random.default_rng(0)).save("top.png")
    Path("rows.csv").write_text("a,b\n1,1\n")
    image = invoke(["predict", "top.png", "--csv", "--top-k", "1"])
    assert image.exit_code == 0, image.output
    assert image.stderr == (
        "Model: runs/bars-1/model.keras (the newest in runs/ that takes 8x8 grayscale images)\n"
    )
    assert image.stdout.splitlines()[1].startswith("top.png,,top,")
    rows = invoke(["predict", "rows.csv", "--csv", "--top-k", "1"])
    assert rows.exit_code == 0, rows.output
    assert rows.stderr == (
        "Model: runs/answer-1/model.keras (the newest in runs/ that takes rows of 2 features)\n"
    )


def test_logits_of_a_plain_keras_model_are_shown_through_softmax(isolated: Path) -> None:
    """A plain Keras model's logits are shown through softmax: probabilities between 0 and 100%."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.set_weights([np.array([[4.0, -3.0, 0.0], [0.0, 1.0, 2.0]]), np.zeros(3)])
    model.save("logits.keras")
    Path("rows.csv").write_text("1,0\n0,1\n")
    result = invoke(["predict", "rows.csv", "--model", "logits.keras", "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == "the model's outputs are logits: shown through softmax"
    logits = np.array([[4.0, -3.0, 0.0], [0.0, 1.0, 2.0]])
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for row, prediction in enumerate(json.loads(result.stdout)["predictions"]):
        shown = {int(item["label"]): item["probability"] for item in prediction["top_k"]}
        assert [shown[index] for index in range(3)] == pytest.approx(expected[row])
