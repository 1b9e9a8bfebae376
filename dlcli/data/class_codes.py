"""Integer labels that are not a classifier's class indices, read as class names.

The UCR archive codes its classes 1 and 2, a survey 3, 5 and 7: such labels cannot be the
indices 0..units-1 of the output, so they are class names, sorted by value, and the labels
become the indices of those names; in a model of several outputs, output by output.
`dataset.csv.label_kind` says `indices` (keep today's refusal of an index beyond the output)
or `names` (always names) instead.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from dlcli.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from dlcli.data.common import Splits


def are_indices(labels: list[np.ndarray], units: int, task: str) -> bool:
    """Whether integer labels are class indices of an output of `units` units.

    >>> import numpy as np
    >>> are_indices([np.array([0, 2, 1])], 3, "multiclass"), are_indices([np.array([1, 2])], 2, "multiclass")
    (True, False)
    >>> are_indices([np.array([0, 1])], 1, "binary"), are_indices([np.array([1, 2])], 1, "binary")
    (True, False)
    """  # noqa: E501
    highest = 1 if task == "binary" else units - 1
    return all(array.size == 0 or (array.min() >= 0 and array.max() <= highest) for array in labels)


@dataclasses.dataclass(frozen=True)
class Head:
    """A classifier's output as its labels meet it: its units, its task and its label column."""

    units: int
    task: str
    column: str


def codes_as_names(splits: Splits, heads: dict[str, Head]) -> tuple[Splits, list[str]]:
    """The splits with integer class codes turned into class names, and a note for each output
    whose labels were turned.

    `heads` are the model's outputs by name ("" for a model of one output). An output's labels
    change only where they are integers (`info.integer_labels`) of a classifier and are not the
    indices of its units; its class names go to `info.class_names` (one output) or
    `info.output_classes`.

    Raises:
        DataError: a validation or test code that the training labels do not have.
    """
    import numpy as np

    parts = {
        name: split
        for name, split in (
            ("train", splits.train),
            ("validation", splits.validation),
            ("test", None if splits.test_is_train else splits.test),
        )
        if split is not None
    }
    classes: dict[str, list[str]] = {}
    notes = []
    for output, head in heads.items():
        if output not in splits.info.integer_labels or head.task not in ("multiclass", "binary"):
            continue
        arrays = {name: np.asarray(_labels_of(split.y, output)) for name, split in parts.items()}
        if are_indices(list(arrays.values()), head.units, head.task):
            continue
        codes = np.unique(arrays["train"])
        parts = {
            name: dataclasses.replace(
                split, y=_with_labels(split.y, output, _indices(arrays[name], codes, name))
            )
            for name, split in parts.items()
        }
        classes[output] = names = [str(int(code)) for code in codes]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        units = "one sigmoid unit" if head.task == "binary" else f"the {head.units}-unit output"
        of_output = f" `{output}`" if output else ""
        notes.append(
            f"Labels: the integer codes {shown} of `{head.column}` are class names (they are not "
            f"the indices of {units}{of_output}); `dataset.csv.label_kind: indices` refuses "
            "them instead"
        )
    if not classes:
        return splits, []
    info = splits.info
    if "" in classes:
        info = dataclasses.replace(info, class_names=classes[""])
    else:
        info = dataclasses.replace(info, output_classes={**(info.output_classes or {}), **classes})
    train = parts["train"]
    return dataclasses.replace(
        splits,
        train=train,
        validation=parts.get("validation"),
        test=train if splits.test_is_train else parts["test"],
        info=info,
    ), notes


def _labels_of(y: Any, output: str) -> Any:
    return y if output == "" else y[output]


def _with_labels(y: Any, output: str, labels: np.ndarray) -> Any:
    return labels if output == "" else {**y, output: labels}


def as_class_indices(y: np.ndarray, class_names: list[str], source: str) -> np.ndarray:
    """Integer codes -> the indices of their names among a model's `class_names`.

    Raises:
        DataError: a code that is not one of the model's classes.
    """
    import numpy as np

    codes = np.array([int(name) for name in class_names])
    return _indices(y, codes, source)


def _indices(y: np.ndarray, codes: np.ndarray, where: str) -> np.ndarray:
    import numpy as np

    y = np.asarray(y)
    order = np.argsort(codes)
    position = np.searchsorted(codes, y, sorter=order)
    position = np.clip(position, 0, len(codes) - 1)
    found = codes[order][position] == y
    if not found.all():
        first = y[np.argmax(~found)].item()
        known = ", ".join(str(code) for code in codes)
        raise DataError(
            f"the {where} labels hold the code {first}, which the training labels do not have "
            f"(their codes are {known})"
        )
    return order[position].astype(np.int64)
