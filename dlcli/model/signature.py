"""The task a model does, from the loss Keras resolves and the layer that makes the output.

multiclass, binary, multilabel or regression (`Task`): training records it in dlcli.json, and
evaluate and predict read scores and class names by it. Keras is imported only inside `loss_name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from dlcli.errors import ConfigError
from dlcli.spec.keras_catalog import COMPILE_SHORTCUTS
from dlcli.spec.schema import KerasObject

Shape = tuple[int | None, ...]

# Names that `model.compile` resolves itself from the labels and the output.
RESOLVED_BY_COMPILE = COMPILE_SHORTCUTS["metrics"]


class Task(str, Enum):
    """What a model's output is: class scores, a probability, per-label probabilities or values.

    A member is its string: it compares equal to it, formats as it, and dlcli.json and
    evaluate's JSON hold the string.

    Example:

    >>> Task("binary") is Task.binary, Task.binary == "binary", f"task {Task.binary}"
    (True, True, 'task binary')
    >>> import json; json.dumps({"task": Task.multiclass})
    '{"task": "multiclass"}'
    """

    multiclass = "multiclass"  # one class of several: softmax scores
    binary = "binary"  # one sigmoid output: the probability of class 1
    multilabel = "multilabel"  # several labels at once: a sigmoid per label
    regression = "regression"  # values

    def __str__(self) -> str:
        return self.value


# The task of a whole model: its one output's, or "multioutput" (each output has its own task).
ModelTask = Task | Literal["multioutput"]


@dataclass(frozen=True)
class Output:
    """The model's one output: its name, its shape per example and its layer's activation."""

    name: str
    shape: Shape
    activation: str = ""  # "softmax", "sigmoid", "linear", ...; "" when not known

    @property
    def units(self) -> int | None:
        """The size of the last axis: classes, labels or targets per example."""
        return self.shape[-1] if self.shape else None


def single_shape(shape: Any) -> Shape | None:
    """The shape without the batch axis of a model's one input or output; None for several."""
    if isinstance(shape, list):
        if len(shape) != 1:
            return None
        shape = shape[0]
    return tuple(shape[1:])


def shape_fits(found: tuple[int, ...], expected: Shape) -> bool:
    """Whether examples of shape `found` fit a model's `expected` shape (None: any size).

    Example:
        >>> shape_fits((28, 28), (28, None)), shape_fits((28, 28), (28, 28, 1))
        (True, False)
    """
    return len(found) == len(expected) and all(
        e is None or e == f for e, f in zip(expected, found, strict=True)
    )


def input_shapes(model: Any) -> dict[str, Shape]:
    """Each model input's shape without the batch axis, by the input's name."""
    return {tensor.name: tuple(tensor.shape[1:]) for tensor in model.inputs}


def describe_outputs(model: Any) -> list[Output]:
    """The model's outputs, in order, each from the layer that makes it."""
    names = list(getattr(model, "output_names", None) or [model.layers[-1].name])
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    outputs = []
    for name, shape in zip(names, shapes, strict=True):
        try:
            layer = model.get_layer(name)
        except ValueError:
            layer = model.layers[-1]
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if not activation and type(layer).__name__ == "Softmax":  # a layer with no `activation`
            activation = "softmax"
        outputs.append(Output(name, tuple(shape[1:]), activation))
    return outputs


def describe_output(model: Any) -> Output:
    """The model's one output, from the layer that makes it.

    Raises:
        ConfigError: the model has several outputs (see `describe_outputs`).
    """
    outputs = describe_outputs(model)
    if len(outputs) > 1:
        listed = ", ".join(f"`{output.name}`" for output in outputs)
        raise ConfigError(f"the model has {len(outputs)} outputs ({listed}); expected one")
    return outputs[0]


def loss_name(loss: KerasObject) -> str:
    """The name of the loss function Keras resolves a spec's loss to.

    Class names, function names and aliases of one loss give one name:
    `SparseCategoricalCrossentropy` and `sparse_categorical_crossentropy` give
    "sparse_categorical_crossentropy", `mse` gives "mean_squared_error". `crossentropy` and
    `ce`, which `compile` resolves from the labels, give "crossentropy"; a name Keras's
    `keras.losses.get` does not know (a plugin's loss) is returned as written.
    """
    if loss.class_name in RESOLVED_BY_COMPILE:
        return "crossentropy"
    import keras

    try:
        resolved = keras.losses.get(loss.class_name)
    except (ValueError, TypeError):
        return loss.class_name
    return str(getattr(resolved, "name", None) or getattr(resolved, "__name__", loss.class_name))


def task_for(loss: str, units: int | None) -> Task:
    """The task a loss (as `loss_name` gives it) makes of an output with `units` units.

    Example:

    >>> task_for("sparse_categorical_crossentropy", 10)
    <Task.multiclass: 'multiclass'>
    >>> task_for("binary_crossentropy", 1), task_for("hinge", 3)
    (<Task.binary: 'binary'>, <Task.multilabel: 'multilabel'>)
    >>> task_for("crossentropy", 1), task_for("mean_squared_error", 1)
    (<Task.binary: 'binary'>, <Task.regression: 'regression'>)
    """
    if "categorical" in loss:  # (sparse_)categorical_(focal_)crossentropy, categorical_hinge
        return Task.multiclass
    if "binary" in loss or loss in ("hinge", "squared_hinge", "crossentropy"):
        if units == 1:
            return Task.binary
        return Task.multiclass if loss == "crossentropy" else Task.multilabel
    return Task.regression


def loss_of(loss: KerasObject | dict[str, KerasObject], output: Output) -> KerasObject:
    """The loss of the model's output, also when `compile.loss` maps output names to losses."""
    if not isinstance(loss, dict):
        return loss
    if output.name in loss:
        return loss[output.name]
    if len(loss) == 1:
        return next(iter(loss.values()))
    listed = ", ".join(f"`{name}`" for name in loss)
    raise ConfigError(
        f"`compile.loss` names the outputs {listed}, but the model's output is `{output.name}`"
    )


def task_of(loss: KerasObject | dict[str, KerasObject], model: Any) -> Task:
    """multiclass, binary, multilabel or regression: from the resolved loss and the output.

    Args:
        loss: `compile.loss` of the spec: one loss, or output name -> loss.
        model: the built keras.Model, of one output (`tasks_of` for several).

    Raises:
        ConfigError: the model has several outputs, or `compile.loss` has none for its output.

    Example:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        task_of(KerasObject(class_name="SparseCategoricalCrossentropy"), model)  # Task.multiclass
    """
    output = describe_output(model)
    return task_for(loss_name(loss_of(loss, output)), output.units)


def tasks_of(loss: KerasObject | dict[str, KerasObject], model: Any) -> dict[str, Task]:
    """The task of each of the model's outputs, by output name (see `task_of`)."""
    return {
        output.name: task_for(loss_name(loss_of(loss, output)), output.units)
        for output in describe_outputs(model)
    }
