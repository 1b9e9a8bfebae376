"""Keras names in a spec checked against the installed Keras, without importing it.

Layers, optimizers, losses, metrics, callbacks and the Keras objects nested in their arguments
(initializers, regularizers, constraints, activations, learning-rate schedules, wrapped layers)
are resolved through `dlcli.spec.keras_catalog`, the same resolver `dlcli.model.build` builds
them with, so a name that validates is the name that is built. Classes that would run code or
read files named in the spec, or that dlcli manages itself, are refused with the reason (`REFUSED`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from dlcli.spec import keras_catalog
from dlcli.spec.messages import FLOAT_AS_STRING, KeyPath, suggest
from dlcli.spec.schema import KerasObject, LayerSpec, Spec

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
NESTED_NAMESPACES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r".*_initializer$"), "initializers"),
    (re.compile(r".*_regularizer$"), "regularizers"),
    (re.compile(r".*_constraint$"), "constraints"),
    (re.compile(r"^(.*_)?activation$"), "activations"),
    (re.compile(r"^learning_rate$"), "optimizers.schedules"),
    (re.compile(r"^(backward_)?layer$"), "layers"),
)


def keras_problems(spec: Spec) -> Iterator[tuple[KeyPath, str]]:
    """(key path, what is wrong) for each Keras name in `spec` that dlcli.model.build cannot
    build."""
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


def _check_layers(
    spec: Spec, layers: Iterable[tuple[KeyPath, LayerSpec]]
) -> Iterator[tuple[KeyPath, str]]:
    known = {i.name for i in spec.model.inputs or []}
    for path, layer in layers:
        if is_backbone(layer.class_name):
            yield from _check_backbone(path, layer)
        else:
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


def is_backbone(name: str) -> bool:
    """Whether a layer's name is a model of `keras.applications` (and not a layer's name)."""
    return (
        keras_catalog.resolve("layers", name) is None
        and keras_catalog.resolve("applications", name) is not None
    )


# Arguments of a keras.applications model that dlcli gives itself.
BACKBONE_ARGUMENTS = {
    "input_shape": "dlcli gives the backbone the shape of what the layer before it outputs",
    "input_tensor": "dlcli gives the backbone the output of the layer before it",
}


def _check_backbone(path: KeyPath, layer: LayerSpec) -> Iterator[tuple[KeyPath, str]]:
    """A pretrained model of keras.applications as a layer: its arguments, and `weights`
    `imagenet`, null or a weights file (whose existence `dlcli train` checks)."""
    for argument, reason in BACKBONE_ARGUMENTS.items():
        if argument in layer.config:
            yield (*path, layer.class_name, argument), f"`{argument}` is not given: {reason}"
            return
    yield from _check_object("applications", path, layer)
    weights = layer.config.get("weights", "imagenet")
    if weights is not None and not isinstance(weights, str):
        yield (
            (*path, layer.class_name, "weights"),
            f"`weights` is `imagenet`, null or the path of a weights file; got {weights!r}",
        )


def _check_object(
    namespace: str, path: KeyPath, obj: KerasObject, *, custom_allowed: bool = False
) -> Iterator[tuple[KeyPath, str]]:
    """What `dlcli.model.build` could not build of `obj`: it builds through the same
    `keras_catalog.resolve`."""
    kind = {"losses": "loss", "optimizers.schedules": "learning-rate schedule"}.get(
        namespace, namespace.rstrip("s")
    )
    refused = REFUSED.get(namespace, {})
    if obj.class_name in refused:
        yield path, f"`{obj.class_name}` is refused: {refused[obj.class_name]}"
        return
    resolved = keras_catalog.resolve(namespace, obj.class_name)
    if resolved is None:
        if custom_allowed:
            return
        usable = [name for name in keras_catalog.identifiers(namespace) if name not in refused]
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
    if not keras_catalog.is_class(namespace, resolved):
        if obj.config:
            message = "is a function and takes no arguments; use its class name"
            yield path, f"`{obj.class_name}` {message}"
        return
    if not obj.config and keras_catalog.takes_string(namespace, obj.class_name):
        return  # Keras's `get` reads the name itself
    known = keras_catalog.arguments(namespace, resolved)
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
    if isinstance(value, str) and FLOAT_AS_STRING.match(value):
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
    `learning_rate` or `layer`; None for any other value. `dlcli.model.build` builds exactly these.
    """
    if not (isinstance(value, str) or (isinstance(value, dict) and len(value) == 1)):
        return None
    return next((ns for pattern, ns in NESTED_NAMESPACES if pattern.match(argument)), None)
