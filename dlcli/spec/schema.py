"""The typed spec: pydantic models of every key, their types and ranges, unknown keys refused.

One source of truth for what a spec may hold: `dlcli validate`, `dlcli train` and `dlcli schema`
all read these classes. Values are not coerced (`strict`), and an unknown key is refused with
the nearest valid one. Keras names inside are checked separately (`dlcli.spec.names`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dlcli.spec.messages import suggest

KerasDataset = Literal[
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imdb",
    "reuters",
    "boston_housing",
    "california_housing",
]
SOURCES = ("name", "npz", "csv", "images", "text_folders", "inline")  # one per dataset
ColorMode = Literal["grayscale", "rgb", "rgba"]
ImageCache = Literal["memory", "disk", "none"]


class Strict(BaseModel):
    """Unknown keys are refused with the nearest valid key; values are not coerced."""

    # defer_build: validators are built on first use, once for the whole Spec, which keeps
    # `dlcli --help` from building them
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = [field.alias or name for name, field in cls.model_fields.items()]
            for key in data:
                if key not in valid:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key `{key}`{hint}; valid keys: {valid}",
                        {"key": key, "hint": suggest(str(key), valid), "valid": ", ".join(valid)},
                    )
        return data


class KerasObject(BaseModel):
    """A Keras object written as `name` or `{ClassName: {argument: value}}`."""

    model_config = ConfigDict(strict=True, defer_build=True)
    class_name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"class_name": data}
        if isinstance(data, KerasObject) or (isinstance(data, dict) and "class_name" in data):
            return data
        if isinstance(data, dict) and len(data) == 1:
            (class_name, config), *_ = data.items()
            if config is None:
                config = {}
            if not isinstance(config, dict):
                raise PydanticCustomError(
                    "keras_object",
                    "the arguments of `{name}` must be a mapping of argument: value",
                    {"name": class_name},
                )
            return {"class_name": str(class_name), "config": config}
        raise PydanticCustomError(
            "keras_object", "expected a name, or a mapping of one class name to its arguments"
        )

    @model_serializer
    def _to_yaml(self) -> Any:
        return {self.class_name: self.config} if self.config else self.class_name


class LayerSpec(KerasObject):
    """One layer; in a graph model, `name` and `from` say how it connects."""

    name: str | None = None
    inputs: list[str] | None = None

    @model_validator(mode="after")
    def _split_graph_keys(self) -> LayerSpec:
        name, source = self.config.get("name"), self.config.get("from")
        if name is not None and not isinstance(name, str):
            raise PydanticCustomError(
                "layer_name",
                "`{layer}.name` must be a string. Received: {received}",
                {"layer": self.class_name, "received": repr(name)},
            )
        sources = [source] if isinstance(source, str) else source
        if source is not None and not (
            isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources)
        ):
            raise PydanticCustomError(
                "layer_from",
                "`{layer}.from` must be a layer name or a list of them. Received: {received}",
                {"layer": self.class_name, "received": repr(source)},
            )
        self.name = name
        self.config.pop("from", None)
        self.inputs = sources
        return self

    @model_serializer
    def _to_yaml(self) -> Any:
        config = dict(self.config)
        if self.inputs is not None:
            config["from"] = self.inputs[0] if len(self.inputs) == 1 else self.inputs
        return {self.class_name: config} if config else self.class_name


Dimension = Annotated[int, Field(gt=0)] | None
NO_MODEL_INPUT = (
    "give either `input: [shape]` (a layer stack) or `inputs:` (a graph of named layers), "
    "not both and not neither"
)


class InputSpec(Strict):
    name: str
    shape: list[Dimension] = Field(min_length=1)
    dtype: str = "float32"


class ModelSpec(Strict):
    input: list[Dimension] | None = Field(None, min_length=1)
    inputs: list[InputSpec] | None = Field(None, min_length=1)
    layers: list[LayerSpec] = Field(min_length=1)
    outputs: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind_of_input(self) -> ModelSpec:
        # Neither is allowed here: a model of typed CSV columns takes the encoded features
        # (`dataset.csv.columns`); `dlcli.spec.columns` refuses neither for any other dataset.
        if self.input is not None and self.inputs is not None:
            raise PydanticCustomError("model_inputs", NO_MODEL_INPUT)
        if self.input is not None and self.outputs is not None:
            raise PydanticCustomError(
                "model_inputs", "`outputs` belongs to a graph model; use `inputs:` with it"
            )
        return self

    @property
    def is_graph(self) -> bool:
        return self.inputs is not None


class CompileSpec(Strict):
    optimizer: KerasObject = Field(default_factory=lambda: KerasObject(class_name="rmsprop"))
    loss: KerasObject | dict[str, KerasObject]
    metrics: list[KerasObject] | dict[str, list[KerasObject]] = Field(default_factory=list)
    loss_weights: list[float] | dict[str, float] | None = None
    jit_compile: bool | Literal["auto"] = "auto"
    steps_per_execution: Annotated[int, Field(gt=0)] | Literal["auto"] = "auto"


class UnfreezeSpec(Strict):
    """What the second phase of fine-tuning trains: a layer frozen in the first (`fit.freeze`),
    whole or its last `layers` sublayers (a backbone's, as `backbone.layers` lists them)."""

    layer: str
    layers: int | None = Field(None, gt=0)  # None: all of them

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"layer": data} if isinstance(data, str) else data


class FineTuneSpec(Strict):
    """`fit.fine_tune`: the second phase of a run (dlcli.train.fine_tune). Epochs 1 to
    `from_epoch - 1` train with `fit.freeze` frozen; from epoch `from_epoch` to `fit.epochs`,
    `unfreeze` trains too (its BatchNormalization layers stay frozen, in inference mode), with
    the spec's optimizer made anew at `learning_rate`."""

    from_epoch: int = Field(ge=2)
    unfreeze: UnfreezeSpec
    learning_rate: float = Field(gt=0, allow_inf_nan=False)


class FitSpec(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(32, gt=0)
    shuffle: bool = True
    callbacks: list[KerasObject] = Field(default_factory=list)
    # a weight per class, by index or name, or "balanced" (from the training labels' counts)
    class_weight: dict[int | str, Annotated[float, Field(ge=0)]] | Literal["balanced"] | None = None
    validation_freq: int = Field(1, gt=0)  # validate after every n-th epoch
    initial_weights: str | None = None  # a .keras file: weights copied by layer name
    freeze: list[str] = Field(default_factory=list)  # layers not trained (fine-tuning)
    fine_tune: FineTuneSpec | None = None  # a second phase: frozen layers trained on


class NpzSource(Strict):
    path: str
    x_train: str = "x_train"
    y_train: str = "y_train"
    x_validation: str = "x_val"
    y_validation: str = "y_val"
    x_test: str = "x_test"
    y_test: str = "y_test"

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class CrossSpec(Strict):
    """`FeatureSpace.cross`: a hashed crossing of typed columns."""

    features: list[str] = Field(min_length=2)
    crossing_dim: int = Field(gt=0)
    output_mode: Literal["one_hot", "int"] = "one_hot"


class WindowsSpec(Strict):
    """`dataset.csv.windows`: ordered rows cut into windows by
    `keras.utils.timeseries_dataset_from_array` (its argument names), each window's target the
    `target` column `delay` rows after the window's last row (dlcli.data.time_windows)."""

    sequence_length: int = Field(gt=0)  # rows in a window
    sampling_rate: int = Field(1, gt=0)  # a window takes every n-th row
    sequence_stride: int = Field(1, gt=0)  # rows between the starts of successive windows
    target: str  # the column forecast
    delay: int = Field(1, ge=0)  # rows from a window's last row to its target's row


class CsvSource(Strict):
    train: str
    validation: str | None = None
    test: str | None = None
    label: str | None = None  # the label column; "label" when neither it nor `labels` is given
    features: list[str] | None = None
    weight: str | None = None  # a column of per-example weights for training (not a feature)
    inputs: dict[str, list[str]] | None = Field(None, min_length=1)  # model input -> columns
    labels: dict[str, str] | None = Field(None, min_length=1)  # model output -> label column
    # column -> a keras.utils.FeatureSpace type (`string_categorical`, `{float_discretized:
    # {num_bins: 8}}`); the model then takes the encoded features (dlcli.model.feature_space)
    columns: dict[str, KerasObject] | None = Field(None, min_length=1)
    crosses: list[CrossSpec] | None = None  # FeatureSpace.cross of typed columns
    # empty numeric cells: filled with the training mean when not given (`missing_policy`)
    missing: Literal["mean", "drop", "error"] | None = None
    label_kind: Literal["indices", "names", "numbers"] | None = None  # None: inferred
    windows: WindowsSpec | None = None  # time windows over the ordered rows (a time series)

    @property
    def missing_policy(self) -> Literal["mean", "drop", "error"]:
        """What is done with an empty numeric cell of a table: `missing`, or the mean."""
        return self.missing or "mean"

    @property
    def label_columns(self) -> list[str]:
        """The label columns in the order of the model's outputs: the values of `labels`, else
        `label` (the column `label` when neither is given)."""
        return list(self.labels.values()) if self.labels else [self.label or "label"]

    @model_validator(mode="after")
    def _one_kind_of_columns(self) -> CsvSource:
        if self.windows is not None and self.missing is not None:
            raise PydanticCustomError(
                "csv_windows",
                "an empty cell of a time series is refused (its file, line and column are "
                "named): a gap has no one right filling, so fill it in the file; leave out "
                "`missing`",
            )
        if self.windows is not None:
            for key in ("label", "labels", "inputs", "columns", "weight", "label_kind"):
                if getattr(self, key) is not None:
                    raise PydanticCustomError(
                        "csv_windows",
                        "`windows` forecasts `windows.target` from windows of the `features` "
                        "columns; leave out `{key}`",
                        {"key": key},
                    )
        for one, several in (("features", "inputs"), ("label", "labels")):
            if getattr(self, one) is not None and getattr(self, several) is not None:
                raise PydanticCustomError(
                    "csv_columns",
                    "give `{one}` (one model {what}) or `{several}` (columns by model "
                    "{what} name), not both",
                    {
                        "one": one,
                        "several": several,
                        "what": "input" if one == "features" else "output",
                    },
                )
        if self.columns is not None and self.inputs is not None:
            raise PydanticCustomError(
                "csv_columns",
                "give `columns` (typed columns, encoded into one model input) or `inputs` "
                "(columns by model input name), not both",
            )
        if self.crosses is not None and self.columns is None:
            raise PydanticCustomError(
                "csv_columns", "`crosses` combine typed columns: name their types in `columns`"
            )
        for name, columns in (self.inputs or {}).items():
            if not columns:
                raise PydanticCustomError(
                    "csv_columns", "`inputs.{name}` lists no columns", {"name": name}
                )
        return self


class ImagesSource(Strict):
    train: str
    validation: str | None = None
    test: str | None = None
    image_size: list[Annotated[int, Field(gt=0)]] = Field(min_length=2, max_length=2)
    color_mode: ColorMode = "rgb"
    # Where decoded training images are kept between epochs: `memory` (decoded once, held as
    # arrays), `disk` (decoded once into a file in dlcli's cache folder, memory-mapped, kept for
    # later runs: dlcli.data.image_cache), `none` (decoded again each epoch, a few batches ahead
    # of the step); unset: memory when they take at most
    # `dlcli.data.image_folders.MEMORY_FRACTION` of the physical memory, else none.
    cache: ImageCache | None = None


class TextFoldersSource(Strict):
    """Text files in class folders, as `keras.utils.text_dataset_from_directory` reads them: one
    subfolder per class, its `.txt` files (UTF-8) the examples."""

    train: str
    validation: str | None = None
    test: str | None = None
    # keras.layers.TextVectorization's own arguments (`max_tokens`, `output_mode`, `ngrams`,
    # `output_sequence_length`, ...), as a CSV text column's `{text: {...}}`; adapted on the
    # training texts and saved inside the model (dlcli.model.feature_space)
    text: dict[str, Any]


class InlineSource(Strict):
    x: list[Any] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    x_test: list[Any] | None = None
    y_test: list[Any] | None = None


class DatasetSpec(Strict):
    name: KerasDataset | None = None
    npz: NpzSource | None = None
    csv: CsvSource | None = None
    images: ImagesSource | None = None
    text_folders: TextFoldersSource | None = None
    inline: InlineSource | None = None
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    test_split: float = Field(0.0, ge=0.0, lt=1.0)
    num_words: int | None = Field(None, gt=0)
    sequence_length: int | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _columns_of_tables(cls, data: Any) -> Any:
        """`columns` (typed columns) or `windows` (time windows) written beside another source:
        say where it belongs."""
        if not isinstance(data, dict):
            return data
        others = ("name", "npz", "images", "text_folders", "inline")
        for key in ("", *others[1:]):
            place = data if not key else data.get(key)
            for option, what in (
                ("columns", "types the columns of a CSV table"),
                ("windows", "cuts the ordered rows of a CSV table into time windows"),
            ):
                if isinstance(place, dict) and option in place:
                    given = [k for k in others if k in data]
                    if not key and "csv" in data and not given:  # misplaced, not misused
                        raise PydanticCustomError(
                            "csv_" + option,
                            "`{option}` belongs under `csv`: `dataset.csv.{option}`",
                            {"option": option},
                        )
                    source = key or next(iter(given), "this")
                    hint = (
                        "; the arguments of its TextVectorization go in `text_folders.text`"
                        if source == "text_folders" and option == "columns"
                        else ""
                    )
                    raise PydanticCustomError(
                        "csv_" + option,
                        "`{option}` {what} (`dataset.csv.{option}`); the `{source}` source has "
                        "no columns{hint}",
                        {"option": option, "what": what, "source": source, "hint": hint},
                    )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        given = [key for key in SOURCES if getattr(self, key)]
        if len(given) != 1:
            raise PydanticCustomError(
                "dataset_source",
                "give exactly one of `name` (a Keras dataset), `npz`, `csv`, `images`, "
                "`text_folders` or `inline`; found {found}",
                {"found": ", ".join(f"`{key}`" for key in given) or "none"},
            )
        if (self.num_words or self.sequence_length) and self.name not in ("imdb", "reuters"):
            raise PydanticCustomError(
                "dataset_option", "`num_words` and `sequence_length` apply to imdb and reuters"
            )
        return self

    @property
    def source(self) -> str:
        """A short human name of where the data comes from."""
        if self.name:
            return self.name
        for key in ("npz", "csv", "images", "text_folders"):
            value = getattr(self, key)
            if value is not None:
                return value.path if key == "npz" else value.train
        return "inline"


class OutputSpec(Strict):
    dir: str = "runs"
    tensorboard: bool = False
    onnx: bool = True  # model.onnx beside model.keras, verified (predict runs it without TF)
    # mirror the run to MLflow (dlcli.track): true for MLFLOW_TRACKING_URI or the local
    # sqlite:///<dir>/mlflow.db, or a tracking URI
    mlflow: bool | Annotated[str, Field(min_length=1)] = False
    mlflow_experiment: Annotated[str, Field(min_length=1, max_length=500)] | None = None  # `name`


Number = int | float


class Distribution(Strict):
    """One key's search space: `{int: [LOW, HIGH]}`, `{float: [LOW, HIGH]}` (each with `log`
    or `step`) or `{choice: [A, B, ...]}`."""

    int_range: list[int] | None = Field(None, alias="int", min_length=2, max_length=2)
    float_range: list[float] | None = Field(None, alias="float", min_length=2, max_length=2)
    choice: list[Any] | None = Field(None, min_length=1)
    log: bool = False  # sample evenly on a log scale (a learning rate, a layer width)
    step: Annotated[Number, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [key for key in ("int", "float", "choice") if self.bounds(key) is not None]
        if len(given) != 1:
            found = ", ".join(f"`{key}`" for key in given) or "none"
            raise PydanticCustomError(
                "distribution",
                "give exactly one of `int`, `float` or `choice`; found {found}",
                {"found": found},
            )
        if self.choice is not None and (self.log or self.step is not None):
            raise PydanticCustomError("distribution", "`log` and `step` apply to `int` and `float`")
        if self.log and self.step is not None:
            raise PydanticCustomError("distribution", "give `log` or `step`, not both")
        low, high = self.int_range or self.float_range or (0, 0)
        if low > high:
            raise PydanticCustomError(
                "distribution",
                "the range [{low}, {high}] is empty: LOW must not exceed HIGH",
                {"low": low, "high": high},
            )
        if self.log and low <= 0:
            raise PydanticCustomError(
                "distribution", "a `log` range must start above 0. Received: {low}", {"low": low}
            )
        if self.int_range is not None and not isinstance(self.step or 1, int):
            raise PydanticCustomError("distribution", "the `step` of an `int` range is an integer")
        return self

    @model_serializer
    def _to_yaml(self) -> dict[str, Any]:
        """As written: `{int: [LOW, HIGH], log: true}` (the keys `int` and `float`, not the
        fields' names)."""
        kind = next(key for key in ("int", "float", "choice") if self.bounds(key) is not None)
        written: dict[str, Any] = {kind: self.bounds(kind)}
        if self.log:
            written["log"] = True
        if self.step is not None:
            written["step"] = self.step
        return written

    def bounds(self, kind: str) -> list[Any] | None:
        """The `int` or `float` range, or the `choice` list, as written."""
        return {"int": self.int_range, "float": self.float_range, "choice": self.choice}[kind]

    def extremes(self) -> list[Any]:
        """The values a spec must accept for every sample to be valid: both ends, or each choice."""
        if self.choice is not None:
            return self.choice
        bounds = self.int_range or self.float_range
        assert bounds is not None  # exactly one of int, float and choice (`_one_kind`)
        return list(bounds)


class SearchSpec(Strict):
    """What `dlcli tune` searches: `space` maps `--set` key paths to distributions."""

    metric: str = "val_loss"  # a metric of the validation split, as Keras's logs name it
    direction: Literal["maximize", "minimize"] | None = None  # None: from the metric's name
    trials: int = Field(20, gt=0)  # the study's trials, over every process that shares it
    timeout: Annotated[Number, Field(gt=0)] | None = None  # seconds; no trial starts after
    pruner: Literal["median", "hyperband", "none"] = "median"
    space: dict[str, Distribution] = Field(min_length=1)
    # trials run before the sampler draws any (Optuna's enqueue_trial): known good values, the
    # spec as written; a key of `space` left out of one is drawn by the sampler
    first_trials: list[dict[str, Any]] | None = Field(None, min_length=1)

    @field_validator("metric")
    @classmethod
    def _on_validation(cls, metric: str) -> str:
        if not metric.startswith("val_"):
            raise PydanticCustomError(
                "search_metric",
                "must be a metric of the validation split, named `val_...` (trials are never "
                "scored on the training or test data), e.g. val_{metric}",
                {"metric": metric},
            )
        return metric


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    seed: int | None = Field(None, ge=0, lt=2**32)
    dataset: DatasetSpec
    model: ModelSpec
    compile: CompileSpec
    fit: FitSpec
    output: OutputSpec = OutputSpec()
    plugins: list[str] = Field(default_factory=list)
    search: SearchSpec | None = None  # for `dlcli tune`; `dlcli train` ignores it

    @field_validator("plugins")
    @classmethod
    def _module_names(cls, plugins: list[str]) -> list[str]:
        for plugin in plugins:
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", plugin):
                raise PydanticCustomError(
                    "plugin", "`{plugin}` is not a Python module name", {"plugin": plugin}
                )
        return plugins

    def to_yaml(self) -> str:
        """The resolved spec as YAML, in the same form it is written in."""
        data = self.model_dump(mode="json", exclude_none=True, by_alias=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
