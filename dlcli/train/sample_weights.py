"""Per-example training weights: `fit.class_weight` and the CSV column `dataset.csv.weight`.

Both become one array of sample weights, the form Keras's `fit` takes them in
(`class_weight` is turned into sample weights by Keras too): the weight of each example's
class times the example's own weight. Only training is weighted; validation and test scores
are those of plain accuracy and loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlcli.data.common import Split
from dlcli.errors import ConfigError
from dlcli.model.signature import Output, Task


def sample_weights(
    class_weight: dict[int | str, float] | str | None,
    train: Split,
    class_names: list[str] | None,
    tasks: Mapping[str, Task],
    outputs: list[Output],
) -> tuple[np.ndarray | None, str | None]:
    """The training examples' weights (None when unweighted) and a note saying what
    `balanced` computed.

    Args:
        class_weight: `fit.class_weight`: by class index or name, or "balanced".
        train: the training split (its labels, and `w` from dataset.csv.weight).
        class_names: the dataset's class names, None when labels are indices.
        tasks: the task of each model output (dlcli.model.signature.tasks_of): class weights
            apply to a model of one output, multiclass or binary.
        outputs: the model's outputs (dlcli.model.signature.describe_outputs).

    Raises:
        ConfigError: class weights for a model that does not classify or has several outputs,
            or a class that the data does not have.

    Example:
        >>> split = Split(np.zeros((4, 1)), np.array([0, 0, 0, 1]))
        >>> binary = [Output("p", (1,), "sigmoid")]
        >>> weights, note = sample_weights("balanced", split, ["cat", "dog"], {"p": Task.binary},
        ...                                binary)
        >>> [round(float(weight), 3) for weight in weights]
        [0.667, 0.667, 0.667, 2.0]
        >>> note
        'fit.class_weight balanced (from the training labels): cat 0.667, dog 2'

    """
    if class_weight is None:
        return train.w, None
    if len(outputs) > 1:
        raise ConfigError(
            f"`fit.class_weight`: applies to a model of one output, and this one has "
            f"{len(outputs)}; weigh the outputs' losses with `compile.loss_weights`"
        )
    task = next(iter(tasks.values()))
    if task not in (Task.multiclass, Task.binary):
        raise ConfigError(
            f"`fit.class_weight`: applies to a classifier, and this model's task is {task}"
        )
    classes = 2 if task == Task.binary else int(outputs[0].units or 0)
    labels = _class_indices(train.y, task)
    note = None
    if class_weight == "balanced":
        counts = np.bincount(labels, minlength=classes).astype(np.float64)
        present = np.count_nonzero(counts)
        per_class = np.divide(
            len(labels), present * counts, out=np.zeros(classes), where=counts > 0
        )
        names = class_names or [str(index) for index in range(classes)]
        pairs = zip(names, per_class, strict=False)
        listed = ", ".join(f"{name} {weight:.3g}" for name, weight in pairs)
        note = f"fit.class_weight balanced (from the training labels): {listed}"
    else:
        assert isinstance(class_weight, dict)
        per_class = np.ones(classes)
        for key, weight in class_weight.items():
            per_class[_class_index(key, class_names, classes)] = weight
    weights = per_class[labels].astype(np.float32)
    return (weights if train.w is None else weights * train.w), note


def _class_indices(y: Any, task: Task) -> np.ndarray:
    """Each example's class index: integer labels, one-hot rows or 0/1 binary targets."""
    y = np.asarray(y)
    if task == Task.multiclass and y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    return y.reshape(len(y)).round().astype(np.int64)


def _class_index(key: int | str, class_names: list[str] | None, classes: int) -> int:
    if isinstance(key, str) and class_names and key in class_names:
        return class_names.index(key)
    if isinstance(key, int) and 0 <= key < classes:
        return key
    where = f"`fit.class_weight`: no class `{key}`"
    if class_names:
        raise ConfigError(
            f"{where}; the classes are {', '.join(class_names)} (or 0 to {classes - 1} by index)"
        )
    raise ConfigError(f"{where}; the classes are 0 to {classes - 1}")
