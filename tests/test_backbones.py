"""Pretrained models of keras.applications as layers (`MobileNet: {...}` in `model.layers`),
offline: a backbone's weights saved to a file here, trained from with `weights: FILE` and
frozen; its preprocessing inside the saved model; mistakes in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from .helpers import invoke, write_photos

BACKBONE = {"alpha": 0.25, "include_top": False, "pooling": "avg", "name": "backbone"}


def spec(weights: Any, **backbone: Any) -> str:
    """MobileNet (a quarter of its width) between augmentation and a new head, frozen."""
    return yaml.safe_dump(
        {
            "name": "transfer",
            "seed": 5,
            "dataset": {"images": {"train": "photos", "image_size": [32, 32]}},
            "model": {
                "input": [32, 32, 3],
                "layers": [
                    {"RandomFlip": {"mode": "horizontal"}},
                    {"MobileNet": {**BACKBONE, "weights": weights, **backbone}},
                    {"Dropout": {"rate": 0.3}},
                    {"Dense": {"units": 2, "activation": "softmax", "name": "head"}},
                ],
            },
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {"epochs": 2, "batch_size": 8, "freeze": ["backbone"]},
            "output": {"onnx": False},
        }
    )


def test_a_frozen_backbone_keeps_the_weights_of_its_file_and_the_head_trains(
    isolated: Path,
) -> None:
    """The backbone's weights after training are bitwise those of the file it started from;
    the head's changed; MobileNet's preprocess_input ([-1, 1]) is a layer of the saved model."""
    import keras

    write_photos(isolated / "photos")
    made = keras.applications.MobileNet(input_shape=(32, 32, 3), weights=None, **BACKBONE)
    # Fresh BatchNormalization statistics fade the features to ~1e-17: the head would learn
    # nothing. Statistics of one batch (momentum 0) give features as a trained backbone's.
    for layer in made.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    made(np.random.default_rng(1).uniform(-1, 1, (16, 32, 32, 3)), training=True)
    made.save_weights(isolated / "backbone.weights.h5")
    (isolated / "spec.yaml").write_text(spec("backbone.weights.h5"))
    result = invoke(["train", "spec.yaml", "--quiet"])
    assert result.exit_code == 0, result.output
    trained = keras.saving.load_model(isolated / "runs" / "transfer-1" / "model.keras")
    assert [layer.name for layer in trained.layers] == [
        "random_flip",
        "backbone_preprocess",
        "backbone",
        "dropout",
        "head",
    ]
    for after, before in zip(
        trained.get_layer("backbone").get_weights(), made.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(after, before)
    pixels = np.array([[[[0.0, 127.5, 255.0]]]])
    np.testing.assert_allclose(trained.get_layer("backbone_preprocess")(pixels), [[[[-1, 0, 1]]]])
    assert len(trained.get_layer("backbone").non_trainable_weights) == len(made.weights)
    from dlcli.model.build import build_model
    from dlcli.spec.load import load_spec

    keras.utils.set_random_seed(5)  # the model as training built it, from the same seed
    built = build_model(load_spec(isolated / "spec.yaml").model, "transfer", base_dir=isolated)
    for after, before in zip(
        trained.get_layer("head").get_weights(), built.get_layer("head").get_weights(), strict=True
    ):
        assert not np.array_equal(after, before)


@pytest.mark.parametrize(
    ("weights", "backbone", "code", "message"),
    [
        (
            "missing.weights.h5",
            {},
            6,
            "weights file not found: {folder}/missing.weights.h5 "
            "(model.layers[1].MobileNet.weights in spec.yaml)",
        ),
        (
            None,
            {"input_shape": [32, 32, 3]},
            3,
            "`input_shape` is not given: dlcli gives the backbone the shape of what the layer "
            "before it outputs",
        ),
        (None, {"alfa": 1}, 3, "`MobileNet` has no argument `alfa` (did you mean `alpha`?)"),
        (3, {}, 3, "`weights` is `imagenet`, null or the path of a weights file; got 3"),
    ],
)
def test_backbone_mistakes_are_one_line_before_tensorflow_loads(
    isolated: Path, weights: Any, backbone: dict[str, Any], code: int, message: str
) -> None:
    """`dlcli validate` (no TensorFlow) names the key and what is wrong."""
    (isolated / "spec.yaml").write_text(spec(weights, **backbone))
    (isolated / "photos").mkdir()
    result = invoke(["validate", "spec.yaml"])
    assert result.exit_code == code, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert message.format(folder=isolated) in result.output


def test_imagenet_weights_offline_name_the_url_and_where_to_put_the_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, refusing_origin: str
) -> None:
    """With the download refused (a proxy that refuses every connection): exit 5, one line
    with the URL and the file Keras would read instead."""
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, refusing_origin)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    (isolated / "spec.yaml").write_text(spec("imagenet"))
    result = invoke(["summary", "spec.yaml"])
    assert result.exit_code == 5, result.output
    url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
    url += "mobilenet_2_5_224_tf_no_top.h5"
    assert result.output.strip().splitlines()[-1] == (
        f"Error: cannot download the imagenet weights of `MobileNet` from {url}; where this "
        f"machine is offline, fetch that file elsewhere and put it at "
        f"{isolated / 'keras' / 'models' / 'mobilenet_2_5_224_tf_no_top.h5'}, or give "
        "`weights:` a local weights file"
    )
