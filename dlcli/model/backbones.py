"""Pretrained models of `keras.applications` as layers of a spec, with their preprocessing inside.

A spec names a backbone by its Keras name (`EfficientNetB0`, `MobileNetV2`, `ResNet50`, ...) with
its own arguments; dlcli gives it the input shape of what the layer before outputs, and
`weights` is `imagenet` (Keras downloads and caches the file), null, or a weights file (relative
to the spec). Ahead of the backbone go Keras layers that do what the family's
`preprocess_input` does to raw 0-255 pixels (`preprocessing_layers`), so the saved model takes
photos as they are and `predict` needs no recipe: built-in layers only, which a `.keras` file
loads in safe mode. Nothing here imports Keras at module level.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dlcli.data.common import resolve_path
from dlcli.errors import ConfigError, DownloadError, ModelFileError
from dlcli.spec.messages import KeyPath, format_path
from dlcli.spec.names import is_backbone
from dlcli.spec.schema import LayerSpec, ModelSpec

# What `keras.applications.<family>.preprocess_input` does to raw RGB pixels, by mode
# (keras.applications.imagenet_utils names them): scaled to [-1, 1]; scaled to [0, 1] and
# normalized by ImageNet's channel means and deviations; or turned to BGR and centred on its
# channel means, unscaled.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def weights_files(model: ModelSpec, base_dir: Path) -> list[tuple[KeyPath, Path]]:
    """(key path, file) of each backbone whose `weights` names a file, for checking before
    TensorFlow loads.

    Example:

    >>> layer = {"MobileNet": {"weights": "w.weights.h5", "include_top": False}}
    >>> spec = ModelSpec.model_validate({"input": [32, 32, 3], "layers": [layer]})
    >>> weights_files(spec, Path("/specs"))  # doctest: +SKIP
    [(('model', 'layers', 0, 'MobileNet', 'weights'), PosixPath('/specs/w.weights.h5'))]
    """
    found: list[tuple[KeyPath, Path]] = []
    for index, layer in enumerate(model.layers):
        weights = layer.config.get("weights")
        if is_backbone(layer.class_name) and isinstance(weights, str) and weights != "imagenet":
            path = ("model", "layers", index, layer.class_name, "weights")
            found.append((path, resolve_path(weights, base_dir)))
    return found


def check_weights_files(model: ModelSpec, base_dir: Path, spec_file: Path | None) -> None:
    """Refuse a backbone's weights file that does not exist, before TensorFlow loads.

    Raises:
        ModelFileError: the first missing file, its absolute path and the key naming it.
    """
    for path, file in weights_files(model, base_dir):
        if not file.is_file():
            where = format_path(path) + (f" in {spec_file}" if spec_file else "")
            raise ModelFileError(f"weights file not found: {os.path.abspath(file)} ({where})")


def backbone_layers(
    layer: LayerSpec, input_shape: tuple[Any, ...], base_dir: Path | None, path: KeyPath
) -> list[Any]:
    """The backbone `layer` names, built for inputs of `input_shape`, after the layers of its
    preprocessing (none where its family takes raw 0-255 pixels).

    Raises:
        ConfigError: arguments Keras refuses, or a family whose preprocessing dlcli cannot
            express in Keras layers.
        DownloadError: `weights: imagenet` and the file cannot be downloaded (no network).
    """
    import keras

    config = dict(layer.config)
    weights = config.get("weights", "imagenet")
    if weights not in (None, "imagenet"):
        config["weights"] = str(resolve_path(str(weights), base_dir or Path.cwd()))
    constructor = getattr(keras.applications, layer.class_name)
    where = format_path((*path, layer.class_name))
    try:
        backbone = constructor(input_shape=tuple(input_shape), **config)
    except Exception as error:  # Keras raises many types for arguments of the wrong kind
        message = " ".join(str(error).split())
        url = re.search(r"https?://\S+?(?=[:\s]|$)", message)
        if weights == "imagenet" and url and "fetch failure" in message.lower():
            raise DownloadError(_offline(layer.class_name, url.group(0))) from error
        raise ConfigError(f"`{where}`: {message}") from error
    return [*preprocessing_layers(layer.class_name, backbone.name, where), backbone]


def _offline(class_name: str, url: str) -> str:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    place = os.path.join(home, "models", url.rsplit("/", 1)[-1])
    return (
        f"cannot download the imagenet weights of `{class_name}` from {url}; where this "
        f"machine is offline, fetch that file elsewhere and put it at {place}, or give "
        "`weights:` a local weights file"
    )


def preprocessing_layers(class_name: str, name: str, where: str) -> list[Any]:
    """Keras layers doing what the family's `preprocess_input` does to raw RGB pixels.

    The family's `preprocess_input` is run on test pixels and matched against the modes it
    may have (none, `tf`, `torch`, `caffe`); the layers are named after the backbone.

    Raises:
        ConfigError: no mode matches.
    """
    import keras
    import numpy as np

    family = next(
        module
        for module in vars(keras.applications).values()
        if getattr(module, class_name, None) is getattr(keras.applications, class_name)
        and hasattr(module, "preprocess_input")
    )
    pixels = np.array([[[[0.0, 64.0, 255.0], [10.0, 128.0, 200.0]]]], dtype=np.float32)
    found = np.asarray(family.preprocess_input(pixels.copy()))
    torch = (pixels / 255 - np.array(TORCH_MEAN)) / np.array(TORCH_STD)
    caffe = pixels[..., ::-1] - np.array(CAFFE_MEAN_BGR)
    if np.allclose(found, pixels):
        return []
    if np.allclose(found, pixels / 127.5 - 1, atol=1e-5):
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=f"{name}_preprocess")]
    if np.allclose(found, torch, atol=1e-4):
        return [
            keras.layers.Rescaling(1 / 255, name=f"{name}_rescale"),
            keras.layers.Normalization(
                mean=list(TORCH_MEAN),
                variance=[s * s for s in TORCH_STD],
                name=f"{name}_preprocess",
            ),
        ]
    if np.allclose(found, caffe, atol=1e-3):
        # RGB -> BGR and the means taken off in one fixed 1x1 convolution (not trained); its
        # weights are set here and saved with the model.
        swap = keras.layers.Conv2D(3, 1, trainable=False, name=f"{name}_preprocess")
        swap.build((None, None, None, 3))
        swap.set_weights([np.eye(3)[::-1].reshape(1, 1, 3, 3), -np.array(CAFFE_MEAN_BGR)])
        return [swap]
    raise ConfigError(
        f"`{where}`: dlcli cannot express the preprocessing of `{class_name}` in Keras layers; "
        "give it a model input that takes pixels as its family's preprocess_input returns them"
    )
