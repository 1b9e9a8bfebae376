"""The models `dlcli serve` serves: found by path, run folder or run name, opened once through
the same `Predictor` as `dlcli predict`, described as tensors, and warmed up before the server
says it is ready.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.common import Arrays
from dlcli.errors import ModelFileError, ServerError
from dlcli.inference.inputs import MemoryInput
from dlcli.inference.predict import Predictor, Scores, open_predictor
from dlcli.model.signature import Task
from dlcli.serve.tensors import DATATYPES, TensorSpec

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "litert": "tflite", "keras": "keras"}
_NUMPY_DATATYPES = {np.dtype(kind).name: name for name, kind in DATATYPES.items()}


@dataclass
class ServedModel:
    """One model being served under `name`: what it takes and gives, as tensors."""

    name: str
    predictor: Predictor
    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = field(default_factory=list)  # known once warmed up
    ready: bool = False

    @property
    def kind(self) -> str:
        """ "image" for a model of images, "table" for rows with named columns, else "tensor"."""
        description = self.predictor.description
        if description.image is not None:
            return "image"
        named = description.feature_names or description.inputs
        return "table" if named else "tensor"

    def read(self, arrays: Arrays) -> Arrays:
        """Tensors of a request checked and shaped as `dlcli predict` reads arrays."""
        return self.predictor.read(MemoryInput("request", arrays))

    def infer(self, arrays: Arrays) -> list[Scores]:
        """The scores of each output for a batch of examples (checked by `read`)."""
        return self.predictor.scores(self.read(arrays))

    def warm_up(self) -> None:
        """One inference on an example of zeros: the runtime allocates and compiles what it
        needs before the first request, and the outputs' shapes become known."""
        zeros: Arrays
        if len(self.inputs) > 1:
            zeros = {spec.name: np.zeros([1, *spec.shape[1:]], "float32") for spec in self.inputs}
        else:
            zeros = np.zeros([1, *self.inputs[0].shape[1:]], "float32")
        self.outputs = output_specs(self.infer(zeros))
        self.ready = True

    def page_info(self) -> dict[str, Any]:
        """What the page at `/` needs to offer the model: its kind, classes and columns."""
        description = self.predictor.description
        image = description.image
        columns = description.feature_names or [
            column for names in (description.inputs or {}).values() for column in names
        ]
        return {
            "name": self.name,
            "kind": self.kind,
            "task": str(description.task),
            "runtime": self.predictor.runtime_name,
            "classes": description.class_names,
            "columns": list(dict.fromkeys(columns)),
            "image": None
            if image is None
            else {"height": image.height, "width": image.width, "channels": image.channels},
        }


def input_specs(predictor: Predictor) -> list[TensorSpec]:
    """The model's inputs as tensors: `input` for the one input, else by input name."""
    info = predictor.info
    assert info is not None
    if info.inputs is not None:
        return [
            TensorSpec(name, _datatype(record.dtype), [-1, *record.shape])
            for name, record in info.inputs.items()
        ]
    shape = [-1 if size is None else int(size) for size in predictor.description.shape]
    dtype = info.input.dtype if info.input is not None else "float32"
    return [TensorSpec("input", _datatype(dtype), [-1, *shape])]


def _datatype(dtype: str) -> str:
    return _NUMPY_DATATYPES.get(dtype, "FP32")


def output_names(scores: Scores) -> tuple[str, str]:
    """The tensors of one output: its scores, and its most probable class's name.

    >>> import numpy as np
    >>> output_names(Scores(output="", task=Task.multiclass, labels=[], values=np.zeros(1)))
    ('probabilities', 'label')
    """
    if scores.task == Task.regression:
        return scores.output or "values", ""
    return scores.output or "probabilities", f"{scores.output}_label" if scores.output else "label"


def output_specs(scores: list[Scores]) -> list[TensorSpec]:
    """The tensors a model's outputs are answered as, from the scores of one inference."""
    specs = []
    for score in scores:
        values, label = output_names(score)
        specs.append(TensorSpec(values, "FP32", [-1, score.values.shape[1]]))
        if label:
            specs.append(TensorSpec(label, "BYTES", [-1]))
    return specs


def find_model(text: str, runs_dir: Path) -> Path:
    """The model file a MODEL argument names: a `.keras` or `.onnx` file, a run folder (its
    model.keras), or a run name (model.keras of the newest `runs/NAME-N/` that has one).

    Raises:
        ModelFileError: nothing of the sort exists; names where it looked.
    """
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / "model.keras").is_file():
            return path / "model.keras"
        raise ModelFileError(f"{text}: a folder without model.keras (not a finished run?)")
    pattern = re.compile(rf"^{re.escape(text)}-(\d+)$")
    runs = []
    if runs_dir.is_dir() and "/" not in text:
        runs = [
            (int(found[1]), run / "model.keras")
            for run in runs_dir.iterdir()
            if (found := pattern.match(run.name)) and (run / "model.keras").is_file()
        ]
    if not runs:
        raise ModelFileError(
            f"{text}: no such model file or run folder, and no finished run of that name in "
            f"{runs_dir}/ ({runs_dir}/{text}-N/model.keras)"
        )
    return max(runs)[1]


def served_names(paths: list[Path], names: list[str], spec_names: list[str]) -> list[str]:
    """The name each model is served under: `--name` in order, else its spec's name.

    Raises:
        ServerError: more names than models, a name that cannot be part of a URL, or two
            models under one name.
    """
    if len(names) > len(paths):
        raise ServerError(f"{len(names)} --name options for {len(paths)} models; give one each")
    chosen = names + spec_names[len(names) :]
    for name in chosen:
        if not NAME_PATTERN.match(name):
            raise ServerError(
                f"cannot serve a model as {name!r}: a name is letters, digits and _ . - "
                "(give --name)"
            )
    for name in dict.fromkeys(chosen):
        same = [str(path) for path, other in zip(paths, chosen, strict=True) if other == name]
        if len(same) > 1:
            raise ServerError(
                f"two models would be served as {name}: {', '.join(same)}; give each a --name"
            )
    return chosen


def open_models(
    models: list[str],
    *,
    names: list[str],
    runs_dir: Path,
    runtime_name: str,
    onnx_threads: int | None,
) -> list[ServedModel]:
    """Open and warm up every model to serve (on the main thread: Keras may be imported).

    Raises:
        ModelFileError: a model is missing, unsafe or not trained by dlcli.
        ServerError: the names cannot be served (`served_names`).
    """
    paths = [find_model(text, runs_dir) for text in models]
    predictors = []
    for path in paths:
        predictor = open_predictor(path, runtime_name=runtime_name, onnx_threads=onnx_threads)
        if predictor.info is None:
            raise ModelFileError(f"{path}: has no dlcli.json; dlcli serve takes dlcli models")
        predictors.append(predictor)
    spec_names = [predictor.info.spec.name for predictor in predictors if predictor.info]
    served = [
        ServedModel(name=name, predictor=predictor, inputs=input_specs(predictor))
        for predictor, name in zip(predictors, served_names(paths, names, spec_names), strict=True)
    ]
    for model in served:
        model.warm_up()
    return served
