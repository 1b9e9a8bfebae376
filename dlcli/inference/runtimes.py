"""Exported models run in their own runtimes: ONNX through onnxruntime and LiteRT through
ai-edge-litert, neither of which imports TensorFlow, and a SavedModel through TensorFlow.

Each runtime takes what a Keras model takes (one array, or a mapping by input name) and gives
one array per model output, in the order of the model's outputs, so that `dlcli export` can
compare them with Keras's and `dlcli predict` can use them in its place.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dlcli.data.common import Arrays
from dlcli.errors import ModelFileError
from dlcli.model.scoring import output_arrays

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelInfo

METADATA_KEY = "dlcli.json"  # the ONNX metadata_props entry that holds dlcli.json
SIDECAR_SUFFIX = ".dlcli.json"  # beside a format that cannot hold it: model.tflite.dlcli.json
EXPORTED_SUFFIXES = {".onnx": "onnx", ".tflite": "litert"}  # run without TensorFlow


class Runtime(Protocol):
    """A loaded model: `run` gives its outputs for a batch of examples."""

    def run(self, x: Arrays) -> list[np.ndarray]: ...


def _fed(x: Arrays, names: list[str], dtypes: list[Any]) -> dict[str, np.ndarray]:
    """The examples by the runtime's input names, in the dtypes it takes (uint8 pixels become
    float32 as Keras would cast them)."""
    if not isinstance(x, dict):
        return {names[0]: np.asarray(x, dtype=dtypes[0])}
    return {
        name: np.asarray(x[_input_name(name, x)], dtype=dtype)
        for name, dtype in zip(names, dtypes, strict=True)
    }


def _input_name(runtime_name: str, x: dict[str, Any]) -> str:
    """The model input a runtime's input is named after (LiteRT adds `serving_default_`, `:0`)."""
    if runtime_name in x:
        return runtime_name
    found = [name for name in x if re.search(rf"(^|_){re.escape(name)}(:\d+)?$", runtime_name)]
    if len(found) != 1:
        raise ModelFileError(f"the exported input `{runtime_name}` names no model input")
    return found[0]


class OnnxModel:
    """An .onnx file in onnxruntime (CPU).

    `run` may be called from several threads at once (onnxruntime releases the GIL in it).
    With `threads`, each call computes on that many intra-op threads, which do not spin
    waiting for work, for a session shared by a pool of callers; otherwise onnxruntime's
    defaults (a thread per physical core).
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own types for a damaged file
            raise ModelFileError(f"{path}: onnxruntime cannot load it ({error})") from error
        inputs = self.session.get_inputs()
        self.names = [item.name for item in inputs]
        self.dtypes = [np.uint8 if item.type == "tensor(uint8)" else np.float32 for item in inputs]

    def metadata(self) -> str | None:
        """The dlcli.json embedded in the file, if any."""
        return self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def run(self, x: Arrays) -> list[np.ndarray]:
        return [np.asarray(out) for out in self.session.run(None, _fed(x, self.names, self.dtypes))]


class LiteRtModel:
    """A .tflite file in the LiteRT interpreter (ai-edge-litert), resized to each batch."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path))
        except (ValueError, RuntimeError) as error:
            raise ModelFileError(f"{path}: LiteRT cannot load it ({error})") from error
        self.inputs = self.interpreter.get_input_details()
        # The converter names outputs StatefulPartitionedCall:0, :1, ... in the model's order.
        self.outputs = sorted(self.interpreter.get_output_details(), key=_output_order)
        self.batch = -1

    def run(self, x: Arrays) -> list[np.ndarray]:
        names = [item["name"] for item in self.inputs]
        fed = _fed(x, names, [item["dtype"] for item in self.inputs])
        rows = len(next(iter(fed.values())))
        if rows != self.batch:
            for item in self.inputs:
                self.interpreter.resize_tensor_input(item["index"], [rows, *item["shape"][1:]])
            with native_stderr_silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                self.interpreter.allocate_tensors()  # a failure is raised with its reason
            self.batch = rows
        for item in self.inputs:
            self.interpreter.set_tensor(item["index"], fed[item["name"]])
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_tensor(item["index"])) for item in self.outputs]


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null: what native code logs there is dropped."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _output_order(detail: dict[str, Any]) -> tuple[int, str]:
    found = re.search(r":(\d+)$", detail["name"])
    return (int(found[1]) if found else 0, detail["name"])


class SavedModel:
    """A SavedModel folder through TensorFlow (its `serve` endpoint, as Keras exports it)."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.model = tf.saved_model.load(str(path))

    def run(self, x: Arrays) -> list[np.ndarray]:
        if isinstance(x, dict):  # Keras exports several inputs as a list, named by input
            x = [x[spec.name] for spec in self.model.serve.input_signature[0]]
        return output_arrays(self.model.serve(x))


# OpenVINO's names of the inference precisions its CPU plugin picks from -> NumPy-style names
PRECISION_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def openvino_default_precision() -> str:
    """The precision OpenVINO's CPU plugin infers in when not told: "f32", or "bf16" (or "f16")
    on a CPU that reports it among its `OPTIMIZATION_CAPABILITIES`."""
    import openvino

    return openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


class OpenVinoModel:
    """An OpenVINO model (.xml with its .bin) compiled for the CPU, in float32 unless
    `precision` names another of `PRECISION_NAMES` (as `INFERENCE_PRECISION_HINT`).

    float32 is what `dlcli export` holds to the tolerance; left to itself, OpenVINO would pick
    bfloat16 on a CPU that has it, whose outputs differ from Keras's by more.
    """

    def __init__(self, path: Path, precision: str = "f32") -> None:
        import openvino

        self.model = openvino.Core().compile_model(
            str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision}
        )
        self.names = [item.get_any_name() for item in self.model.inputs]
        self.dtypes = [np.float32] * len(self.names)

    def run(self, x: Arrays) -> list[np.ndarray]:
        results = self.model(_fed(x, self.names, self.dtypes))
        return [np.asarray(results[output]) for output in self.model.outputs]


def open_runtime(path: Path, kind: str) -> Runtime:
    """The runtime of an exported file: `kind` is onnx, litert, savedmodel or openvino."""
    runtimes: dict[str, type[Any]] = {
        "onnx": OnnxModel,
        "litert": LiteRtModel,
        "savedmodel": SavedModel,
        "openvino": OpenVinoModel,
    }
    return runtimes[kind](path)


def open_exported(path: Path) -> tuple[ModelInfo, Runtime]:
    """An exported .onnx or .tflite file with the dlcli.json it carries (inside the ONNX file,
    beside the LiteRT one), loaded in its runtime; TensorFlow is not imported.

    Raises:
        ModelFileError: the file is missing or damaged, or carries no dlcli.json.
    """
    from dlcli.model.artifact import parse_info

    kind = EXPORTED_SUFFIXES[path.suffix.lower()]
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    runtime = open_runtime(path, kind)
    sidecar = Path(f"{path}{SIDECAR_SUFFIX}")
    if isinstance(runtime, OnnxModel):
        text = runtime.metadata()
    else:
        text = sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None
    if text is None and kind == "onnx":
        raise ModelFileError(
            f"{path}: no dlcli.json inside (not written by `dlcli export`?), so what it takes is "
            "unknown; export the .keras model with `dlcli export`"
        )
    if text is None:
        raise ModelFileError(
            f"{path}: no {sidecar.name} beside it, so what it takes is unknown; `dlcli export` "
            f"wrote it there: copy it along with {path.name} (an .onnx export carries it inside)"
        )
    return parse_info(path, text.encode()), runtime
