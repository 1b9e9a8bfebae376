"""model.keras with an embedded dlcli.json: written atomically, checked before it is loaded.

The file stays a normal Keras zip (`keras.saving.load_model` reads it); dlcli adds the member
`dlcli.json`, typed here as `ModelInfo`: everything evaluate and predict need (the resolved
spec, the dataset reference, the task, class names, how inputs must look, final metrics, time
and device). `inspect` checks the zip (`dlcli.model.archive`) and validates dlcli.json without
TensorFlow, so a wrong file is answered at once; `load` then loads the model and checks that
dlcli.json describes it. Files are written through `dlcli.utils.atomic`.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from dlcli import __version__
from dlcli.errors import ModelFileError
from dlcli.model import archive
from dlcli.model.archive import METADATA_MEMBER
from dlcli.model.signature import ModelTask, Task
from dlcli.spec.messages import format_path
from dlcli.spec.schema import Spec, Strict
from dlcli.utils.atomic import atomic_write, replacing

FORMAT_VERSION = 1

PositiveInt = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(ge=0)]


# ---------------------------------------------------------------------------------------------
# dlcli.json


class _Record(Strict):
    """A part of dlcli.json: unknown keys are refused with the valid ones; nothing coerced."""

    model_config = ConfigDict(frozen=True)  # merged with Strict's


class Versions(_Record):
    dlcli: str
    keras: str
    tensorflow: str


class DatasetRecord(_Record):
    """Where the training data came from and what it held."""

    source: str
    digest: str = Field(
        pattern=r"^[0-9a-f]{64}$"
    )  # dlcli.data.common.digest of the train/test arrays
    sizes: dict[Literal["train", "validation", "test"], Annotated[int, Field(ge=0)]]
    skipped: int = Field(0, ge=0)  # unreadable image files left out (`dlcli train --skip-bad`)


class ImageRecord(_Record):
    """How the training images look (dlcli.data.common.ImageInfo), so new images can be made
    alike."""

    height: PositiveInt
    width: PositiveInt
    channels: Literal[1, 3, 4]
    polarity: Literal["light_on_dark", "dark_on_light"] | None = None
    framing: Literal["mnist", "mnist-stroke"] | None = None

    @property
    def kind(self) -> str:
        """`28x28 grayscale`, `64x64 RGB`."""
        colour = {1: "grayscale", 3: "RGB", 4: "RGBA"}[self.channels]
        return f"{self.height}x{self.width} {colour}"


class InputRecord(_Record):
    """What one example fed to the model looks like."""

    shape: list[PositiveInt] = Field(min_length=1)  # without the batch axis
    dtype: str
    feature_names: list[str] | None = None
    image: ImageRecord | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputRecord:
        if self.image is not None:
            image = self.image
            allowed = [[image.height, image.width, image.channels]]
            if image.channels == 1:
                allowed.append([image.height, image.width])
            if self.shape not in allowed:
                raise PydanticCustomError(
                    "input_shape",
                    "`shape` {shape} does not fit `image` ({height}x{width}, {channels} "
                    "channel(s))",
                    {
                        "shape": self.shape,
                        "height": image.height,
                        "width": image.width,
                        "channels": image.channels,
                    },
                )
        # the features of a row, or of each row of a time window (shape [length, features])
        names = self.feature_names
        if names is not None and (len(self.shape) > 2 or self.shape[-1] != len(names)):
            raise PydanticCustomError(
                "input_features",
                "`feature_names` has {count} names but `shape` is {shape}",
                {"count": len(names), "shape": self.shape},
            )
        return self

    def describe(self) -> str:
        """What the model takes, in words: `28x28 grayscale images`, `rows of 4 features`."""
        if self.image is not None:
            return f"{self.image.kind} images"
        if len(self.shape) == 1:
            return f"rows of {self.shape[0]} features"
        if self.feature_names is not None:  # a time window (dataset.csv.windows)
            return f"windows of {self.shape[0]} rows of {', '.join(self.feature_names)}"
        return f"arrays of shape {tuple(self.shape)}"


class OutputRecord(_Record):
    """One output of a model of several: its task and, for a classifier, its class names."""

    task: Task
    class_names: list[str] | None = None

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> Any:
        return _task_named(value, multioutput=False)


class Training(_Record):
    epochs: int = Field(ge=0)
    fit_seconds: Seconds
    total_seconds: Seconds
    device: str
    workers: int = Field(default=1, ge=1)  # processes that trained together (TF_CONFIG)
    stopped_early: str | None = None  # EarlyStopping (or another callback) ended training


class FinalMetrics(Training):
    """metrics.json of the run: the scores on the split evaluated after training, and timing."""

    evaluated_on: Literal["test", "train", "validation"]  # validation: a trial of `dlcli tune`
    test: dict[str, float] | None = None
    train: dict[str, float] | None = None
    validation: dict[str, float] | None = None


class ColumnsRecord(_Record):
    """The columns of a CSV-trained model: how each is read (dlcli.data.csv_tables), what
    fills an empty numeric cell, and for typed columns the width FeatureSpace encodes them to
    (the saved model then takes the raw columns by name). A model of text folders has the one
    column `text` (dlcli.data.text_folders)."""

    kinds: dict[str, Literal["number", "integer", "string", "text"]]
    encoded: PositiveInt | None = None  # typed columns (`dataset.csv.columns`), text folders
    missing: Literal["mean", "drop", "error"] = "mean"
    fill: dict[str, float] = Field(default_factory=dict)  # the training means


class ModelInfo(_Record):
    """dlcli.json: everything `dlcli evaluate` and `dlcli predict` need besides the model.

    Example:
        info = artifact.inspect("runs/mnist-1/model.keras").info
        info.input.describe()  # '28x28 grayscale images'
    """

    format: Literal[1]
    versions: Versions
    spec: Spec
    dataset: DatasetRecord
    task: ModelTask  # multioutput: each output's task is in `outputs`
    class_names: list[str] | None = None
    input: InputRecord | None = None  # the one input; `inputs` by name for several
    inputs: dict[str, InputRecord] | None = None
    outputs: dict[str, OutputRecord] | None = None  # by name, for a model of several outputs
    columns: ColumnsRecord | None = None  # a model trained on CSV tables
    metrics: FinalMetrics
    training: Training

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> Any:
        return _task_named(value, multioutput=True)

    @field_serializer("spec")
    def _spec_as_written(self, spec: Spec) -> Any:
        return spec.model_dump(mode="json", exclude_none=True)

    @model_validator(mode="after")
    def _consistent(self) -> ModelInfo:
        if (self.input is None) == (self.inputs is None):
            raise PydanticCustomError(
                "model_inputs", "give `input` (one model input) or `inputs` (by name), not both"
            )
        if (self.task == "multioutput") != (self.outputs is not None):
            raise PydanticCustomError(
                "model_outputs", "`outputs` is given exactly when `task` is multioutput"
            )
        for output in (self.outputs or {}).values():
            _check_class_names(output.task, output.class_names)
        _check_class_names(self.task, self.class_names)
        return self

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each input by name (the one input's name is "")."""
        if self.inputs is not None:
            return {name: tuple(record.shape) for name, record in self.inputs.items()}
        assert self.input is not None
        return {"": tuple(self.input.shape)}

    def output_tasks(self) -> dict[str, Task]:
        """The task of each output by name (the one output's name is "")."""
        if self.outputs is not None:
            return {name: record.task for name, record in self.outputs.items()}
        assert isinstance(self.task, Task)  # one output: not "multioutput" (`_consistent`)
        return {"": self.task}

    def describe(self) -> str:
        """What the model takes, in words (see `InputRecord.describe`)."""
        kinds = self.columns.kinds if self.columns is not None else {}
        if list(kinds.values()) == ["text"]:
            column = next(iter(kinds))
            return f"text (.txt files, or .csv files with a column `{column}`)"
        if self.input is not None:
            return self.input.describe()
        assert self.inputs is not None
        return "rows of " + ", ".join(
            f"{name} ({', '.join(record.feature_names or [])})"
            if record.feature_names
            else f"{name} {tuple(record.shape)}"
            for name, record in self.inputs.items()
        )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


def _task_named(value: Any, *, multioutput: bool) -> Task | str:
    """dlcli.json's `task` (a string in the file) as a `Task`, or "multioutput" where allowed."""
    allowed = [task.value for task in Task] + (["multioutput"] if multioutput else [])
    if isinstance(value, str) and value in allowed:
        return "multioutput" if value == "multioutput" else Task(value)
    listed = [repr(name) for name in allowed]
    raise PydanticCustomError(
        "literal_error",
        "Input should be {expected}",
        {"expected": f"{', '.join(listed[:-1])} or {listed[-1]}"},
    )


def _check_class_names(task: ModelTask, names: list[str] | None) -> None:
    """Refuse class names that the task cannot have."""
    if names is None:
        return
    if task == Task.regression:
        raise PydanticCustomError("class_names", "`class_names` is given but `task` is regression")
    if task == Task.binary and len(names) != 2:
        raise PydanticCustomError(
            "class_names",
            "`class_names` has {count} names but a binary classifier has 2",
            {"count": len(names)},
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise PydanticCustomError(
            "class_names",
            "`class_names` names {names} more than once",
            {"names": ", ".join(f"`{name}`" for name in repeated)},
        )


def _field_message(error: ErrorDetails) -> str:
    """One pydantic error as "`key.path` what is wrong. Received: value"."""
    path = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    where = f"`{format_path(path)}`" if path else "dlcli.json"
    if kind == "missing":
        return f"{where} is required but missing"
    if kind == "unknown_key" or message.startswith("`"):  # the message names the key itself
        return f"{where}: {message}" if path else message
    message = re.sub(r"^(Input|String|List|Dictionary|Value) should ", "must ", message)
    value = error.get("input")
    if not isinstance(value, dict | list):
        message += f". Received: {value!r}"
    return f"{where} {message}"


def parse_info(path: Path, data: bytes) -> ModelInfo:
    """dlcli.json's bytes -> ModelInfo; ModelFileError names the file and the key path."""
    document = archive.parse_member(path, METADATA_MEMBER, data)
    where = f"{path}: {METADATA_MEMBER}"
    if not isinstance(document, dict):
        raise ModelFileError(f"{path}: {METADATA_MEMBER} inside is corrupt (not an object)")
    version = document.get("format")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where}: format {version} was written by a newer dlcli (this is dlcli "
            f"{__version__}, which reads format {FORMAT_VERSION}); upgrade dlcli: "
            "pip install --upgrade dlcli"
        )
    try:
        return ModelInfo.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise ModelFileError(f"{where}: {_field_message(first)}") from None


def check_against_model(info: ModelInfo, model: Any, path: Path) -> None:
    """Refuse a dlcli.json that does not describe `model`: its input shape, output width, task.

    Raises:
        ModelFileError: one line naming the file and the key of dlcli.json that is wrong.
    """
    where = f"{path}: {METADATA_MEMBER}"
    inputs, outputs = model.input_shape, model.output_shape
    if isinstance(inputs, list | dict) or isinstance(outputs, list | dict):
        return  # several inputs or outputs: evaluate and predict refuse such models themselves
    if info.input is not None:  # else one raw column by name (a text column): read by name
        expected, recorded = list(inputs[1:]), info.input.shape
        fits = len(expected) == len(recorded) and all(
            e is None or e == r for e, r in zip(expected, recorded, strict=True)
        )
        if not fits:
            raise ModelFileError(
                f"{where}: `input.shape` is {info.input.shape} but the model takes "
                f"{tuple(inputs[1:])}"
            )
    units = outputs[-1] if len(outputs) > 1 else 1
    plural = "output" if units == 1 else "outputs"
    if info.task == Task.binary and units != 1:
        raise ModelFileError(
            f"{where}: `task` is binary (one sigmoid output) but the model has {units} {plural}"
        )
    if info.task == Task.multiclass and units is not None and units < 2:
        raise ModelFileError(f"{where}: `task` is multiclass but the model has {units} {plural}")
    names = info.class_names
    if (
        names is not None
        and info.task in (Task.multiclass, Task.multilabel)
        and len(names) != units
    ):
        raise ModelFileError(
            f"{where}: `class_names` has {len(names)} names but the model has {units} {plural}"
        )


# ---------------------------------------------------------------------------------------------
# Writing


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON, written through `dlcli.utils.atomic.atomic_write`."""
    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def save(model: Any, info: ModelInfo, path: Path) -> None:
    """Save `model` with `info` as dlcli.json; an earlier file is replaced only on success.

    Raises:
        OutputError: the folder cannot be written (disk full, read-only).
    """
    with replacing(path, suffix=".keras") as handle:
        model.save(handle.name)  # Keras saves to a path ending in .keras
        with zipfile.ZipFile(handle.name, "a") as archive:
            archive.writestr(METADATA_MEMBER, info.to_json())


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ModelFile:
    """A .keras file checked safe to load, with its dlcli.json (None for a plain Keras model)."""

    path: Path
    info: ModelInfo | None


@dataclass(frozen=True)
class Artifact:
    model: Any
    metadata: ModelInfo | None
    path: Path


def inspect(path: Path | str, *, require_metadata: bool = True) -> ModelFile:
    """Check a local .keras file and read its dlcli.json, without importing TensorFlow.

    Raises:
        ModelFileError: one line: not found, not a .keras zip, unsafe to load, no dlcli.json
            (with `require_metadata`), or a dlcli.json that is corrupt, incomplete or
            inconsistent (naming the key), or newer than this dlcli reads.

    Example:
        inspect("runs/mnist-1/model.keras").info.task  # Task.multiclass
    """
    text = str(path)
    if "://" in text:
        raise ModelFileError(f"{text}: only local .keras files are loaded, not URLs")
    path = Path(text)
    if path.is_dir():
        hint = f"; did you mean {path / 'model.keras'}?" if (path / "model.keras").is_file() else ""
        raise ModelFileError(f"{path}: is a folder, not a .keras model file{hint}")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ModelFileError(
            f"{path}: legacy HDF5 models are not loaded; re-save it as .keras with Keras 3"
        )
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"{path}: not a .keras model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    data = archive.check(path)
    if data is None and require_metadata:
        raise ModelFileError(
            f"{path}: has no {METADATA_MEMBER}, so it was not trained by dlcli; "
            "`dlcli predict --model` can still use it"
        )
    return ModelFile(path, None if data is None else parse_info(path, data))


def load(path: Path | str | ModelFile, *, require_metadata: bool = True) -> Artifact:
    """Load a local .keras file with safe_mode=True once `inspect` found it safe to.

    Imports TensorFlow (on the main thread only, see dlcli.distribute.device).

    Raises:
        ModelFileError: as `inspect`; Keras cannot load the file; or its dlcli.json does not
            describe the model (`check_against_model`).
    """
    checked = (
        path if isinstance(path, ModelFile) else inspect(path, require_metadata=require_metadata)
    )
    from dlcli.distribute.device import import_keras

    keras = import_keras()
    try:
        model = keras.saving.load_model(checked.path, safe_mode=True, compile=True)
    except Exception as error:  # Keras raises many types for a damaged file
        reason = " ".join(str(error).split())[:300]
        raise ModelFileError(f"{checked.path}: cannot be loaded by Keras ({reason})") from error
    if checked.info is not None:
        check_against_model(checked.info, model, checked.path)
    return Artifact(model, checked.info, checked.path)
