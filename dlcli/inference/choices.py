"""The names a user picks among in `evaluate`, `predict` and `export`: splits, runtimes, export
formats and quantizations, each one Enum that the library checks against and the CLI offers.
Standard library only, so that the CLI's help lists them without loading numpy or TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Split(str, Enum):
    """A split of a model's dataset."""

    test = "test"
    validation = "validation"
    train = "train"


class Runtime(str, Enum):
    """Where `dlcli predict` runs a .keras model; auto: its verified model.onnx, if any."""

    auto = "auto"
    keras = "keras"
    onnx = "onnx"


class Format(str, Enum):
    """A format of `dlcli export`."""

    onnx = "onnx"
    litert = "litert"
    savedmodel = "savedmodel"
    openvino = "openvino"


class Quantization(str, Enum):
    """A quantization of `dlcli export --quantize`."""

    float16 = "float16"
    int8 = "int8"


SPLITS = tuple(split.value for split in Split)
RUNTIMES = tuple(runtime.value for runtime in Runtime)


@dataclass(frozen=True)
class ExportFormat:
    """Where a format of `dlcli export` is written and what it needs."""

    file_name: str  # beside model.keras, unless --output says otherwise
    keras_format: str  # the name `keras.Model.export` knows it by
    packages: tuple[str, ...]  # the modules it needs, for the "pip install" hint
    quantizations: tuple[str, ...] = ()


FORMATS = {
    Format.onnx.value: ExportFormat(
        file_name="model.onnx",
        keras_format="onnx",
        packages=("tf2onnx", "onnx", "onnxruntime"),
        quantizations=(Quantization.int8.value,),
    ),
    Format.litert.value: ExportFormat(
        file_name="model.tflite",
        keras_format="litert",
        packages=("ai_edge_litert",),
        quantizations=(Quantization.float16.value, Quantization.int8.value),
    ),
    Format.savedmodel.value: ExportFormat(
        file_name="model_savedmodel", keras_format="tf_saved_model", packages=()
    ),
    Format.openvino.value: ExportFormat(  # Keras's OpenVINO code needs scipy
        file_name="model.xml", keras_format="openvino", packages=("openvino", "scipy")
    ),
}
QUANTIZATIONS = {name: fmt.quantizations for name, fmt in FORMATS.items() if fmt.quantizations}
