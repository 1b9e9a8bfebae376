"""Integer labels that are not a classifier's class indices, read as class names.

The UCR archive codes its classes 1 and 2, a survey 3, 5 and 7: such labels cannot be the
indices 0..units-1 of the output, so they are class names, sorted by value, and the labels
become the indices of those names. `dataset.csv.label_kind` says `indices` (keep today's
refusal of an index beyond the output) or `names` (always names) instead.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

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


def codes_as_names(splits: Splits, units: int, task: str, label: str) -> tuple[Splits, str | None]:
    """The splits with integer class codes turned into class names, and the note that says so.

    Nothing changes (and the note is None) unless the labels are integers (`info.integer_labels`)
    of a classifier and are not the indices of its output.

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
    arrays = [np.asarray(split.y) for split in parts.values()]
    if not splits.info.integer_labels or task not in ("multiclass", "binary"):
        return splits, None
    if are_indices(arrays, units, task):
        return splits, None
    codes = np.unique(np.asarray(splits.train.y))
    names = [str(int(code)) for code in codes]
    converted = {name: _indices(split.y, codes, name) for name, split in parts.items()}
    replace = dataclasses.replace
    train = replace(splits.train, y=converted["train"])
    validation = splits.validation and replace(splits.validation, y=converted["validation"])
    test = train if splits.test_is_train else replace(splits.test, y=converted["test"])
    info = replace(splits.info, class_names=names)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    outputs = "one sigmoid unit" if task == "binary" else f"the {units}-unit output"
    note = (
        f"Labels: the integer codes {shown} of `{label}` are class names (they are not the "
        f"indices of {outputs}); `dataset.csv.label_kind: indices` refuses them instead"
    )
    return replace(splits, train=train, validation=validation, test=test, info=info), note


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
