"""The data checked against the model, its loss and its metrics before `fit`.

Keras finds these mistakes only inside the first training step, as a shape error deep in a
traceback, or never (it trains on nonsense). Here each one is a DataError naming the split,
what the loss or metric expects, what the labels are, and the fix. The task that the loss and
the output layer make (multiclass, binary, multilabel or regression) is decided in
`dlcli.model.signature`, which these checks read.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlcli.data.common import Arrays, ImageInfo, Split, Splits, check_finite, flat
from dlcli.errors import ConfigError, DataError
from dlcli.model.signature import (
    RESOLVED_BY_COMPILE,
    Output,
    Shape,
    Task,
    describe_output,
    describe_outputs,
    input_shapes,
    loss_name,
    loss_of,
    shape_fits,
    task_for,
    task_of,
    tasks_of,
)
from dlcli.spec.schema import CompileSpec, KerasObject

__all__ = [
    "Output",
    "add_channel_axis",
    "check_against_model",
    "check_examples",
    "check_labels",
    "check_metrics",
    "check_names",
    "check_split",
    "describe_output",
    "describe_outputs",
    "loss_name",
    "task_for",
    "task_of",
    "tasks_of",
    "with_channel_axes",
    "with_channel_axis",
]

TRIAL_EXAMPLES = 8  # labels each metric is tried on before fit


def with_channel_axis(x: np.ndarray, input_shape: Shape) -> np.ndarray:
    """x with a last axis of size 1 when the model takes its examples with one channel.

    A convnet written as in keras-io and the book takes single-channel images as
    (height, width, 1), while MNIST-like arrays hold (height, width). The axis is added as a
    view: nothing is copied. Any other x is returned as it is.

    Example:

    >>> with_channel_axis(np.zeros((2, 8, 8), "uint8"), (8, 8, 1)).shape
    (2, 8, 8, 1)
    >>> with_channel_axis(np.zeros((2, 8, 8), "uint8"), (None, None, 1)).shape
    (2, 8, 8, 1)
    >>> with_channel_axis(np.zeros((2, 8, 8, 1), "uint8"), (8, 8, 1)).shape
    (2, 8, 8, 1)
    """
    if input_shape and input_shape[-1] == 1 and shape_fits(tuple(x.shape[1:]), input_shape[:-1]):
        return x[..., np.newaxis]
    return x


def with_channel_axes(x: Arrays, shapes: Mapping[str, Shape]) -> Arrays:
    """x with the channel axis each model input takes (`with_channel_axis`), by input name."""
    if isinstance(x, dict):
        return {
            name: with_channel_axis(array, shapes[name]) if name in shapes else array
            for name, array in x.items()
        }
    return with_channel_axis(x, next(iter(shapes.values()))) if len(shapes) == 1 else x


def add_channel_axis(splits: Splits, model: Any) -> Splits:
    """The splits, their examples given the channel axis the model's input has (see
    `with_channel_axis`); 2-D examples are then recorded as single-channel images of that size,
    so that predict reads new images as the model takes them."""
    shapes = input_shapes(model)
    if all(
        a is b
        for a, b in zip(
            flat(with_channel_axes(splits.train.x, shapes)), flat(splits.train.x), strict=True
        )
    ):
        return splits

    def expanded(split: Split) -> Split:
        return Split(with_channel_axes(split.x, shapes), split.y, split.w)

    info = splits.info
    if info.image is None and isinstance(splits.train.x, np.ndarray) and splits.train.x.ndim == 3:
        _, height, width = splits.train.x.shape
        info = dataclasses.replace(info, image=ImageInfo(height, width, 1))
    train = expanded(splits.train)
    return dataclasses.replace(
        splits,
        train=train,
        validation=None if splits.validation is None else expanded(splits.validation),
        test=train if splits.test_is_train else expanded(splits.test),
        info=info,
    )


def check_names(split: Split, model: Any, compile_spec: CompileSpec) -> None:
    """Refuse data whose arrays, or a `compile` mapping whose keys, do not name the model's
    inputs and outputs.

    A model of one input takes one array of examples, and one of several inputs a mapping
    by input name (`dataset.csv.inputs`, or `.npz` arrays `x_train_NAME`); outputs alike.

    Raises:
        DataError: the data's arrays do not match the model's inputs or outputs.
        ConfigError: `compile.loss`, `loss_weights` or `metrics` name an output the model
            does not have.
    """
    inputs = [tensor.name for tensor in model.inputs]
    outputs = [output.name for output in describe_outputs(model)]
    for data, names, what, hint in (
        (
            split.x,
            inputs,
            "input",
            "map columns to each with `dataset.csv.inputs`, or name .npz arrays x_train_NAME",
        ),
        (
            split.y,
            outputs,
            "output",
            "map a label column to each with `dataset.csv.labels`, "
            "or name .npz arrays y_train_NAME",
        ),
    ):
        listed = ", ".join(f"`{name}`" for name in names)
        if isinstance(data, dict) and sorted(data) != sorted(names):
            given = ", ".join(f"`{name}`" for name in data)
            if type(model).__name__ == "Sequential":
                listed = "one, unnamed (a layer stack); name inputs with a graph model"
            raise DataError(
                f"the dataset gives the {what}s {given}, but the model's {what}s are {listed}"
            )
        if not isinstance(data, dict) and len(names) > 1:
            raise DataError(
                f"the model has {len(names)} {what}s ({listed}), but the dataset gives one "
                f"array; {hint}"
            )
    for key in ("loss", "loss_weights", "metrics"):
        given = getattr(compile_spec, key)
        unknown = [name for name in given if name not in outputs] if isinstance(given, dict) else []
        if unknown and len(outputs) > 1:
            listed = ", ".join(f"`{name}`" for name in outputs)
            raise ConfigError(
                f"`compile.{key}` names `{unknown[0]}`, which is not an output of the model; "
                f"its outputs are {listed}"
            )


def _labelled(data: Arrays, items: dict[str, Any], split: str) -> list[tuple[str, Any, Any]]:
    """(what to call it, array, item) for each array of `data` with the model input or output
    item of its name; one array goes with the one item."""
    if not isinstance(data, dict):
        return [(split, data, next(iter(items.values())))]
    return [(f"{split} `{name}`", array, items[name]) for name, array in data.items()]


def check_split(
    split: str,
    x: Arrays,
    y: Arrays,
    model: Any,
    loss: KerasObject | dict[str, KerasObject],
    *,
    trained: bool = False,
) -> None:
    """Refuse examples of a shape no model input takes, NaN or Inf, and labels that do not fit
    the loss of their output (`check_labels`); `split` starts each message, which for a
    `trained` model (evaluate) does not suggest changing the model."""
    shapes = input_shapes(model)
    for where, array, expected in _labelled(x, shapes, split):
        found = tuple(array.shape[1:])
        if shape_fits(found, expected):
            check_finite(f"{where} data", array)
            continue
        if trained:
            raise DataError(f"{where}: examples have shape {found} but the model takes {expected}")
        fix = (
            f"change `model.input` to {list(found)} or reshape the data"
            if len(shapes) == 1
            else "change its `shape` in `model.inputs` or its columns"
        )
        raise DataError(
            f"{where} data has examples of shape {found} but the model input is {expected}; {fix}"
        )
    outputs = {output.name: output for output in describe_outputs(model)}
    for where, labels, output in _labelled(y, outputs, split):
        check_finite(f"{where} labels", labels)
        check_labels(where, labels, loss_name(loss_of(loss, output)), output)


def check_against_model(splits: Splits, model: Any, compile_spec: CompileSpec) -> None:
    """Refuse data that does not fit the model, its loss or its metrics, before `fit`.

    The data's arrays must name the model's inputs and outputs (`check_names`); each split's
    examples must have the input shapes and no NaN or Inf, its labels the shape and values
    the loss of their output takes (see `check_labels`), and each metric of `compile.metrics`
    must take the training labels of its output (each is tried on a few of them).

    Args:
        splits: the dataset, after `add_channel_axis`.
        model: the built and compiled keras.Model.
        compile_spec: the spec's `compile` (loss and metrics, as written).

    Raises:
        DataError: one line naming the split (and input or output), what was expected and
            found, and the fix.
        ConfigError: a `compile` mapping names an output the model does not have.
    """
    check_names(splits.train, model, compile_spec)
    named = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    for name, split in named.items():
        if split is not None and not (name == "test" and splits.test_is_train):
            check_split(name, split.x, split.y, model, compile_spec.loss)
    metrics = compile_spec.metrics
    outputs = {output.name: output for output in describe_outputs(model)}
    for where, labels, output in _labelled(splits.train.y, outputs, "train"):
        if isinstance(metrics, dict):  # output name -> its metrics
            chosen = metrics.get(output.name) or (
                next(iter(metrics.values()), []) if len(metrics) == 1 else []
            )
        else:
            chosen = metrics
        check_metrics(where, labels, chosen, output)


def check_examples(
    where: str,
    x: Arrays,
    y: Arrays,
    model: Any,
    compile_spec: CompileSpec,
) -> Arrays:
    """Examples for a trained model checked as training checked its own (for evaluate).

    Args:
        where: the data's name, which starts the messages (a file, or a split's source).
        x: the examples, as the dataset holds them.
        y: their labels.
        model: the trained keras.Model.
        compile_spec: `compile` of the spec the model was trained with.

    Returns:
        x, with the channel axis each model input has (see `with_channel_axis`).

    Raises:
        DataError: the arrays do not match the model's inputs and outputs, the examples do not
            have the input shapes, or the labels do not fit the loss and output.
    """
    x = with_channel_axes(x, input_shapes(model))
    check_names(Split(x, y), model, compile_spec)
    check_split(where, x, y, model, compile_spec.loss, trained=True)
    return x


def check_labels(split: str, labels: np.ndarray, loss: str, output: Output) -> None:
    """Refuse labels whose shape or values the loss cannot take with this output.

    Args:
        split: the split's name, as the message starts: "train", "validation", "test".
        labels: its labels, one row per example.
        loss: the loss as `loss_name` gives it.
        output: the model's output (`describe_output`).

    Raises:
        DataError: e.g. class indices for categorical_crossentropy (one-hot labels), one-hot
            labels for sparse_categorical_crossentropy, one label per example for a softmax of
            several units with binary_crossentropy, class indices beyond the output's units,
            labels outside 0..1 for binary_crossentropy or outside {-1, 1} / {0, 1} for hinge.

    Example:

    >>> softmax = Output("dense", (3,), "softmax")
    >>> check_labels("train", np.array([0, 2, 1]), "categorical_crossentropy", softmax)
    Traceback (most recent call last):
    ...
    dlcli.errors.DataError: train labels hold one class index per example (shape (3,)), but categorical_crossentropy takes one-hot labels of shape (n, 3); integer class labels need sparse_categorical_crossentropy (or one-hot labels for categorical_crossentropy)
    """  # noqa: E501
    units = output.units
    task = task_for(loss, units)
    indices = labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)
    if len(output.shape) == 1 and units is not None:
        _check_label_shape(split, labels, loss, output, task, indices)
    if task == Task.multiclass and units is not None and indices:
        column = labels.reshape(-1)
        bad = (column < 0) | (column >= units) | (column % 1 != 0)
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(
                f"{split} labels must be class indices 0..{units - 1} for a {units}-unit "
                f"output; {int(bad.sum())} are not, the first is {labels[first].item()!r} at "
                f"index {first}"
            )
    if task in (Task.binary, Task.multilabel):
        rows = labels.reshape(len(labels), -1)
        if "hinge" in loss:  # Keras turns 0/1 labels into -1/1 for the hinge losses
            bad = ~np.isin(rows, (-1, 1) if (rows == -1).any() else (0, 1)).all(axis=1)
            expected = f"-1 and 1 (or 0 and 1) for {loss}"
        else:
            bad = ((rows < 0) | (rows > 1)).any(axis=1)
            expected = f"between 0 and 1 for {task} classification"
        if bad.any():
            raise DataError(
                f"{split} labels must be {expected}; {int(bad.sum())} are not, the first at "
                f"index {int(np.argmax(bad))}"
            )


def _check_label_shape(
    split: str, labels: np.ndarray, loss: str, output: Output, task: Task, indices: bool
) -> None:
    """The label shape checks of `check_labels` for an output of one vector per example."""
    units = output.units
    assert units is not None
    shape = labels.shape
    one_hot = labels.ndim == 2 and shape[1] == units
    if task == Task.multiclass and loss.startswith("sparse_") and one_hot and units > 1:
        raise DataError(
            f"{split} labels are one-hot (shape {shape}), but {loss} takes one class index per "
            f"example; one-hot labels need categorical_crossentropy (or class indices "
            f"0..{units - 1} for {loss})"
        )
    one_hot_loss = "sparse" not in loss and loss != "crossentropy"
    if task == Task.multiclass and one_hot_loss and indices and units > 1:
        raise DataError(
            f"{split} labels hold one class index per example (shape {shape}), but {loss} "
            f"takes one-hot labels of shape (n, {units}); integer class labels need "
            "sparse_categorical_crossentropy (or one-hot labels for categorical_crossentropy)"
        )
    if task == Task.multilabel and indices:
        if output.activation == "softmax":
            raise DataError(
                f"{units} classes with softmax need (sparse_)categorical_crossentropy, not "
                f"{loss}: sparse_categorical_crossentropy for class indices such as the {split} "
                f"labels (shape {shape}), categorical_crossentropy for one-hot labels"
            )
        raise DataError(
            f"{split} labels hold one value per example (shape {shape}), but {loss} with a "
            f"{units}-unit output takes one 0/1 column per unit, shape (n, {units}); for one "
            "class per example use a softmax output with sparse_categorical_crossentropy"
        )
    if task == Task.regression and indices and units > 1:
        raise DataError(
            f"{split} labels hold one value per example (shape {shape}), but the model's "
            f"output has {units} units; for class labels use sparse_categorical_crossentropy "
            "with a softmax output, for one target per example make the last layer `units: 1`"
        )
    if not indices and not one_hot and labels.ndim == 2:
        raise DataError(
            f"{split} labels have {shape[1]} columns but the model's output has {units} "
            f"unit(s); make the last layer `units: {shape[1]}`"
        )


def check_metrics(
    split: str, labels: np.ndarray, metrics: list[KerasObject], output: Output
) -> None:
    """Try each metric on a few labels and an output of the model's shape, as `fit` would.

    The names that `compile` resolves from the labels themselves (`accuracy`, `crossentropy`)
    fit any labels and are not tried.

    Raises:
        DataError: a metric refuses the labels: it names the metric, the labels' shape and
            the fix (e.g. AUC, Precision or F1Score need one-hot labels, not class indices).
    """
    tried = [metric for metric in metrics if metric.class_name not in RESOLVED_BY_COMPILE]
    sizes = [size for size in output.shape if size is not None]
    if not tried or len(sizes) != len(output.shape) or not len(labels):
        return
    import keras

    sample = labels[:TRIAL_EXAMPLES]
    units = output.units or 1
    predictions = np.full((len(sample), *sizes), 1 / units, dtype="float32")
    for metric in tried:
        identifier: Any = metric.class_name
        if metric.config:
            identifier = {"class_name": metric.class_name, "config": metric.config}
        try:
            function = keras.metrics.get(identifier)
        except (ValueError, TypeError):
            continue  # compile accepted it (a plugin's name): Keras will tell
        try:
            if hasattr(function, "update_state"):
                function.update_state(sample, predictions)
            else:
                function(sample, predictions)
        except Exception as error:  # what fit would raise in its first step, whatever it is
            raise _metric_error(metric.class_name, split, labels.shape, output, error) from error


def _metric_error(
    metric: str, split: str, shape: tuple[int, ...], output: Output, error: Exception
) -> DataError:
    units = output.units
    indices = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
    if indices and units is not None and units > 1:
        return DataError(
            f"the metric `{metric}` needs one-hot labels for a {units}-unit output (or 0/1 "
            f"labels with a 1-unit sigmoid output), but the {split} labels hold one class index "
            f"per example (shape {shape}); give one-hot labels with categorical_crossentropy, "
            f"or remove `{metric}` from `compile.metrics`"
        )
    lines = re.sub(r"\{\{.*?\}\}\s*", "", str(error)).strip().splitlines()
    reason = lines[-1].strip() if lines else type(error).__name__  # TF puts the cause last
    return DataError(
        f"the metric `{metric}` cannot take the {split} labels (shape {shape}) with the "
        f"model's output (shape {(None, *output.shape)}): {reason}; change the labels or "
        f"remove `{metric}` from `compile.metrics`"
    )
