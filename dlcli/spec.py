"""YAML experiment spec -> typed, validated `Spec`, without importing TensorFlow.

The YAML is read with a loader that refuses what a config file has no business containing
(tags, anchors and aliases, duplicate keys, more than 1 MiB, nesting deeper than 64), and every
key path is mapped to its line so that each mistake is reported as one line naming the file,
line, key path, what was expected and what was received. Keras names (layers, optimizers,
losses, metrics, callbacks and the objects nested in their arguments) are checked against the
installed Keras through `dlcli.catalog`, with the nearest valid name for a typo.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dlcli import catalog
from dlcli.errors import ConfigError

MAX_SPEC_BYTES = 1024 * 1024
MAX_DEPTH = 64
KERAS_DATASETS = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imdb",
    "reuters",
    "boston_housing",
    "california_housing",
)
# Keras classes that would run code or read files named in the spec, or that dlcli manages.
REFUSED: dict[str, dict[str, str]] = {
    "layers": {
        "Lambda": "it runs Python code from the spec; write a custom layer in a plugin module",
        "TFSMLayer": "it loads a SavedModel from a path named in the spec",
        "TorchModuleWrapper": "it wraps arbitrary Python code",
        "JaxLayer": "it wraps arbitrary Python code",
        "FlaxLayer": "it wraps arbitrary Python code",
        "Input": "declare inputs with `model.input` or `model.inputs`",
        "InputLayer": "declare inputs with `model.input` or `model.inputs`",
        "Layer": "it is the abstract base class",
    },
    "optimizers": {"Optimizer": "it is the abstract base class"},
    "optimizers.schedules": {"LearningRateSchedule": "it is the abstract base class"},
    "initializers": {"Initializer": "it is the abstract base class"},
    "regularizers": {"Regularizer": "it is the abstract base class"},
    "constraints": {"Constraint": "it is the abstract base class"},
    "callbacks": {
        "LambdaCallback": "it runs Python code from the spec",
        "LearningRateScheduler": "it runs Python code; use a learning-rate schedule instead",
        "RemoteMonitor": "it sends data over the network",
        "BackupAndRestore": "dlcli writes backups itself; use `dlcli train --resume RUN_DIR`",
        "ModelCheckpoint": "dlcli saves the model itself in the run directory",
        "OrbaxCheckpoint": "dlcli saves the model itself in the run directory",
        "CSVLogger": "dlcli writes history.csv itself",
        "TensorBoard": "set `output.tensorboard: true` instead",
        "ProgbarLogger": "dlcli shows its own progress",
        "History": "dlcli records the history itself",
        "Callback": "it is the abstract base class",
        "CallbackList": "it is not a callback",
    },
    "losses": {"Loss": "it is the abstract base class", "LossFunctionWrapper": "it wraps code"},
    "metrics": {"Metric": "it is the abstract base class", "MeanMetricWrapper": "it wraps code"},
}
# Argument-name patterns whose values are Keras objects of a known namespace.
_NESTED_NAMESPACES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r".*_initializer$"), "initializers"),
    (re.compile(r".*_regularizer$"), "regularizers"),
    (re.compile(r".*_constraint$"), "constraints"),
    (re.compile(r"^(.*_)?activation$"), "activations"),
    (re.compile(r"^learning_rate$"), "optimizers.schedules"),
    (re.compile(r"^(backward_)?layer$"), "layers"),
)
_FLOAT_AS_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")
_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")} | {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """`('model', 'layers', 2, 'Dense')` -> `model.layers[2].Dense`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def suggest(word: str, options: Iterable[str]) -> str:
    """` (did you mean `x`?)` for the closest option, or "".

    Options written in the same style as `word` come first: lower-case names and aliases for a
    lower-case word, class names for a word with capitals. Case is ignored in the comparison.

    Example:
        >>> suggest("adamm", ["Adam", "Nadam", "adam", "nadam"])
        ' (did you mean `adam`?)'
        >>> suggest("Flaten", ["Flatten", "flatten_x"])
        ' (did you mean `Flatten`?)'
    """
    options = sorted(set(options))
    lower_case = word == word.lower()
    same_style = [option for option in options if (option == option.lower()) == lower_case]
    for group in (same_style, options):
        folded: dict[str, str] = {}
        for option in group:
            folded.setdefault(option.lower(), option)
        close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
        if close:
            return f" (did you mean `{folded[close[0]]}`?)"
    return ""


def _one_line(message: str) -> str:
    """Control characters from the spec (a quoted key with a line break) written as escapes."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", lambda m: repr(m.group())[1:-1], message)


# ---------------------------------------------------------------------------------------------
# YAML


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that refuses tags, anchors, aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The composer's depth check comes too late for `[[[[...`: PyYAML scans up to 1024
        # characters ahead for a possible key, in time quadratic in the brackets (~1 s).
        if self.flow_level >= MAX_DEPTH:
            raise ConfigError(
                f"the spec nests deeper than {MAX_DEPTH} levels (line {self.line + 1})"
            )
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(
                f"anchors and aliases (&name, *name) are not allowed in a spec "
                f"(line {event.start_mark.line + 1}); write the value out in full"
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ConfigError(
                f"the spec nests deeper than {MAX_DEPTH} levels (line {event.start_mark.line + 1})"
            )
        node = super().compose_node(parent, index)
        self.depth -= 1
        if node.tag not in _SAFE_TAGS:
            raise ConfigError(
                f"the YAML tag `{node.tag.replace('tag:yaml.org,2002:', '!!')}` is not allowed "
                f"(line {node.start_mark.line + 1}); a spec holds plain values, lists and mappings"
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, list | dict):
                raise ConfigError(
                    f"a key must be a plain value, not a list or mapping (line {line})"
                )
            if key in first_line:
                raise ConfigError(
                    f"duplicate key `{key}` at lines {first_line[key]} and {line}; "
                    "keep only one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _line_map(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _line_map(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)


def parse_yaml(text: str, where: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text into plain data and a key path -> line map."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise ConfigError(f"{where}: the spec is larger than 1 MiB; a spec holds no data")
    loader = None
    try:
        loader = _SpecLoader(text)  # refuses control characters before parsing
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except ConfigError as error:
        raise ConfigError(_one_line(f"{where}: {error}")) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        raise ConfigError(
            f"{where}, line {line}: invalid YAML: unacceptable character "
            f"#x{error.character:04x}: {error.reason}"
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        problem = " ".join(str(error.problem or error).split())
        raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise ConfigError(f"{where}: invalid YAML: {' '.join(str(error).split())}") from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise ConfigError(f"{where}: invalid YAML: {str(error).split(';')[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[KeyPath, int] = {}
    _line_map(node, (), lines)
    return data, lines


# ---------------------------------------------------------------------------------------------
# Typed spec


class Strict(BaseModel):
    """Unknown keys are refused with the nearest valid key; values are not coerced."""

    # defer_build: validators are built on first use, once for the whole Spec (start-up time)
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
        if (self.input is None) == (self.inputs is None):
            raise PydanticCustomError(
                "model_inputs",
                "give either `input: [shape]` (a layer stack) or `inputs:` (a graph of named "
                "layers), not both and not neither",
            )
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


class FitSpec(Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(32, gt=0)
    shuffle: bool = True
    callbacks: list[KerasObject] = Field(default_factory=list)


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


class CsvSource(Strict):
    train: str
    validation: str | None = None
    test: str | None = None
    label: str = "label"
    features: list[str] | None = None


class ImagesSource(Strict):
    train: str
    validation: str | None = None
    test: str | None = None
    image_size: list[Annotated[int, Field(gt=0)]] = Field(min_length=2, max_length=2)
    color_mode: Literal["grayscale", "rgb", "rgba"] = "rgb"


class InlineSource(Strict):
    x: list[Any] = Field(min_length=1)
    y: list[Any] = Field(min_length=1)
    x_test: list[Any] | None = None
    y_test: list[Any] | None = None


class DatasetSpec(Strict):
    name: Literal[KERAS_DATASETS] | None = None  # type: ignore[valid-type]
    npz: NpzSource | None = None
    csv: CsvSource | None = None
    images: ImagesSource | None = None
    inline: InlineSource | None = None
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    test_split: float = Field(0.0, ge=0.0, lt=1.0)
    num_words: int | None = Field(None, gt=0)
    sequence_length: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        given = [key for key in ("name", "npz", "csv", "images", "inline") if getattr(self, key)]
        if len(given) != 1:
            raise PydanticCustomError(
                "dataset_source",
                "give exactly one of `name` (a Keras dataset), `npz`, `csv`, `images` or "
                "`inline`; found {found}",
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
        for key in ("npz", "csv", "images"):
            value = getattr(self, key)
            if value is not None:
                return value.path if key == "npz" else value.train
        return "inline"


class OutputSpec(Strict):
    dir: str = "runs"
    tensorboard: bool = False


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    seed: int | None = Field(None, ge=0, lt=2**32)
    dataset: DatasetSpec
    model: ModelSpec
    compile: CompileSpec
    fit: FitSpec
    output: OutputSpec = OutputSpec()
    plugins: list[str] = Field(default_factory=list)

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


# ---------------------------------------------------------------------------------------------
# Loading


def _describe(error: dict[str, Any]) -> tuple[KeyPath, str]:
    path: KeyPath = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
    if error["type"] == "unknown_key":
        return (*path, error["ctx"]["key"]), error["msg"]
    message = error["msg"]
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    elif message.startswith(("Value error, ", "Assertion failed, ")):
        message = message.split(", ", 1)[1]
    if error["type"] == "literal_error":
        options = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        message += suggest(str(error["input"]), options)
    value = error.get("input")
    if error["type"] in ("missing",):
        return path, "is required but missing"
    if not isinstance(value, dict | list) and error["type"] not in ("unknown_key",):
        message += f". Received: {value!r}"
        if isinstance(value, str) and _FLOAT_AS_STRING.match(value):
            example = f"{float(value):.1e}".replace("e-0", "e-")
            message += f" (YAML reads {value} as text; write it with a dot, e.g. {example})"
    return path, message


def _where(locations: dict[KeyPath, str], path: KeyPath) -> str:
    for end in range(len(path), -1, -1):
        if path[:end] in locations:
            return f"({locations[path[:end]]})"
    return ""


def _message(path: KeyPath, message: str, locations: dict[KeyPath, str]) -> str:
    joiner = " " if message.startswith(("must ", "is ")) else ": "
    return _one_line(f"`{format_path(path)}`{joiner}{message} {_where(locations, path)}".rstrip())


def _keras_problems(spec: Spec) -> Iterator[tuple[KeyPath, str]]:
    layers = [(("model", "layers", i), layer) for i, layer in enumerate(spec.model.layers)]
    yield from _check_layers(spec, layers)
    optimizer = spec.compile.optimizer
    yield from _check_object("optimizers", ("compile", "optimizer"), optimizer)
    losses = spec.compile.loss
    for key, loss in losses.items() if isinstance(losses, dict) else [(None, losses)]:
        path: KeyPath = ("compile", "loss") if key is None else ("compile", "loss", key)
        yield from _check_object("losses", path, loss)
    metrics = spec.compile.metrics
    groups = metrics.items() if isinstance(metrics, dict) else [(None, metrics)]
    for key, group in groups:
        base: KeyPath = ("compile", "metrics") if key is None else ("compile", "metrics", key)
        for index, metric in enumerate(group):
            yield from _check_object("metrics", (*base, index), metric)
    for index, callback in enumerate(spec.fit.callbacks):
        yield from _check_object("callbacks", ("fit", "callbacks", index), callback)


def _check_layers(spec: Spec, layers: list[tuple[KeyPath, LayerSpec]]) -> Iterator[tuple]:
    known = {i.name for i in spec.model.inputs or []}
    for path, layer in layers:
        yield from _check_object("layers", path, layer, custom_allowed=bool(spec.plugins))
        if spec.model.is_graph:
            for source in layer.inputs or []:
                if source not in known:
                    hint = suggest(source, known)
                    yield (
                        (*path, layer.class_name, "from"),
                        (
                            f"`{source}` is not an input or an earlier layer{hint}; "
                            f"known so far: {', '.join(sorted(known))}"
                        ),
                    )
            if layer.name in known:
                yield (*path, layer.class_name, "name"), f"the name `{layer.name}` is used twice"
            if layer.name:
                known.add(layer.name)
        elif layer.inputs is not None:
            yield (
                (*path, layer.class_name, "from"),
                ("`from` belongs to a graph model; declare `inputs:` to wire layers by name"),
            )
    for index, output in enumerate(spec.model.outputs or []):
        if output not in known:
            yield ("model", "outputs", index), f"`{output}` is not a layer{suggest(output, known)}"


def _check_object(
    namespace: str, path: KeyPath, obj: KerasObject, *, custom_allowed: bool = False
) -> Iterator[tuple[KeyPath, str]]:
    """What `dlcli.model` could not build of `obj`: it builds through the same `catalog.resolve`."""
    kind = {"losses": "loss", "optimizers.schedules": "learning-rate schedule"}.get(
        namespace, namespace.rstrip("s")
    )
    refused = REFUSED.get(namespace, {})
    if obj.class_name in refused:
        yield path, f"`{obj.class_name}` is refused: {refused[obj.class_name]}"
        return
    resolved = catalog.resolve(namespace, obj.class_name)
    if resolved is None:
        if custom_allowed:
            return
        usable = [name for name in catalog.identifiers(namespace) if name not in refused]
        yield (
            path,
            (
                f"unknown {kind} `{obj.class_name}`{suggest(obj.class_name, usable)}; "
                f"see keras.{namespace} for the valid names"
            ),
        )
        return
    if resolved in refused:
        yield path, f"`{resolved}` is refused: {refused[resolved]}"
        return
    if not catalog.is_class(namespace, resolved):
        if obj.config:
            message = "is a function and takes no arguments; use its class name"
            yield path, f"`{obj.class_name}` {message}"
        return
    if not obj.config and catalog.takes_string(namespace, obj.class_name):
        return  # Keras's `get` reads the name itself
    known = catalog.arguments(namespace, resolved)
    for argument, value in obj.config.items():
        argument_path = (*path, obj.class_name, argument)
        if known is not None and argument not in known[0]:
            yield (
                argument_path,
                (
                    f"`{obj.class_name}` has no argument `{argument}`"
                    f"{suggest(str(argument), known[0])}"
                ),
            )
            continue
        yield from _check_value(argument_path, str(argument), value)
    missing = sorted(known[1] - set(obj.config)) if known is not None else []
    if missing:
        yield path, f"`{obj.class_name}` needs the argument `{missing[0]}`"


def _check_value(path: KeyPath, argument: str, value: Any) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, str) and _FLOAT_AS_STRING.match(value):
        yield (
            path,
            (
                f"must be a number. Received: {value!r}, which YAML reads as text; "
                f"write it with a dot, e.g. {float(value):.1e}".replace("e-0", "e-")
            ),
        )
        return
    if argument == "learning_rate" and isinstance(value, int | float) and value <= 0:
        yield path, f"must be greater than 0. Received: {value!r}"
        return
    if argument == "name" and not isinstance(value, str):
        yield path, f"must be a string. Received: {value!r}"
        return
    if argument == "learning_rate" and isinstance(value, float) and not math.isfinite(value):
        yield path, f"must be a finite number greater than 0. Received: {value!r}"
        return
    if argument == "vocabulary" and isinstance(value, str):
        yield (
            path,
            "must be a list of tokens; dlcli does not read files named in a spec. "
            f"Received: {value!r}",
        )
        return
    if isinstance(value, dict) and ({"class_name", "module", "registered_name"} & set(value)):
        yield path, "serialized Keras configs are not accepted; write {ClassName: {arguments}}"
        return
    namespace = nested_namespace(argument, value)
    if namespace is None:
        return
    if isinstance(value, str) and namespace in ("optimizers.schedules", "layers"):
        written = "a number or " if namespace == "optimizers.schedules" else ""
        yield (
            path,
            f"must be {written}{{ClassName: {{arguments}}}} from keras.{namespace}. "
            f"Received: {value!r}",
        )
        return
    try:
        nested = KerasObject.model_validate(value)
    except ValidationError as error:  # `{Name: 3}`: the arguments are not a mapping
        yield path, error.errors(include_url=False)[0]["msg"]
        return
    yield from _check_object(namespace, path, nested)


def nested_namespace(argument: str, value: Any) -> str | None:
    """The Keras namespace an argument's value is read from, where it names a Keras object.

    A name (`activation: relu`) or one class with its arguments (`{HeNormal: {seed: 1}}`) in an
    argument such as `*_initializer`, `*_regularizer`, `*_constraint`, `activation`,
    `learning_rate` or `layer`; None for any other value. `dlcli.model` builds exactly these.
    """
    if not (isinstance(value, str) or (isinstance(value, dict) and len(value) == 1)):
        return None
    return next((ns for pattern, ns in _NESTED_NAMESPACES if pattern.match(argument)), None)


def _split_key_path(key_path: str) -> KeyPath:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", key_path) if p)


def _apply_override(data: dict[str, Any], override: str) -> KeyPath:
    """Set one `KEY.PATH=VALUE` in the raw spec data; returns the key path."""
    key_path, separator, raw_value = override.partition("=")
    parts = _split_key_path(key_path)
    if not separator or not parts:
        raise ConfigError(f"--set {override}: expected KEY.PATH=VALUE, e.g. --set fit.epochs=3")
    value, _ = parse_yaml(raw_value, f"--set {override}")
    target: Any = data
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(target, dict) and isinstance(part, str):
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
        elif isinstance(target, list) and isinstance(part, int) and part < len(target):
            if last:
                target[part] = value
            else:
                target = target[part]
        else:
            done = format_path(parts[: index + 1])
            raise ConfigError(f"--set {override}: `{done}` does not exist in the spec")
    return parts


def load_spec(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read, check and type a spec file; `overrides` are `KEY.PATH=VALUE` strings."""
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path}")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)  # a huge file is refused without reading it
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read: {error.strerror}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise ConfigError(f"{path}: the spec is larger than 1 MiB; a spec holds no data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    return spec_from_text(text, str(path), overrides)


def spec_from_text(text: str, source: str, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Check and type a spec given as YAML text; `source` names it in messages."""
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a spec is a mapping with name, dataset, model, compile, fit")
    locations = {path: f"{source}, line {line}" for path, line in lines.items() if path}
    locations[()] = source
    for override in overrides:
        key = _apply_override(data, override)
        for path in [p for p in locations if p[: len(key)] == key]:
            del locations[path]
        for end in range(1, len(key) + 1):
            locations.setdefault(key[:end], f"--set {override}")
        locations[key] = f"--set {override}"
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        key_path, message = _describe(first)
        raise ConfigError(_message(key_path, message, locations)) from None
    for key_path, message in _keras_problems(spec):
        raise ConfigError(_message(key_path, message, locations))
    return spec


def json_schema() -> str:
    """JSON Schema of the spec, for editors."""
    return json.dumps(Spec.model_json_schema(), indent=2)
