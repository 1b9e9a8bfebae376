"""Tensors in serving requests: datatypes, shapes and the errors a request can earn.

Both protocols (`dlcli.serve.open_inference`, `dlcli.serve.tf_serving`) turn their JSON into
numpy arrays here and check them against the model's signature, so a wrong shape, datatype or
a missing input is answered the same way: a 400 whose one line names the expected signature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# The Open Inference Protocol's datatypes and their numpy types (BYTES: strings, not numbers).
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
NUMERIC = [name for name in DATATYPES if name not in ("BOOL", "BYTES")]


class RequestError(Exception):
    """A request that cannot be answered: its HTTP status and the one line of its error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model, as the protocols describe it."""

    name: str
    datatype: str  # one of DATATYPES
    shape: list[int]  # -1 for a dimension of any size (the batch)

    def describe(self) -> str:
        """`name` DATATYPE [shape], as errors show the expected signature.

        >>> TensorSpec("input", "FP32", [-1, 28, 28]).describe()
        '`input` FP32 [-1, 28, 28]'
        """
        return f"`{self.name}` {self.datatype} [{', '.join(str(n) for n in self.shape)}]"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def signature_text(specs: list[TensorSpec]) -> str:
    """The inputs a model takes, for an error message."""
    return "the model takes " + ", ".join(spec.describe() for spec in specs)


def parse_json(body: bytes) -> Any:
    """The JSON of a request body; NaN and Infinity, which JSON does not have, are refused.

    >>> parse_json(b'{"a": [1, 2]}')
    {'a': [1, 2]}
    """

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"malformed JSON: {error}") from None


def _fits(values: np.ndarray, kind: np.dtype) -> bool:
    """Whether numbers can be held by `kind` as they are: integers for an integer type, and
    within its range.

    >>> _fits(np.array([0, 255]), np.dtype("uint8")), _fits(np.array([1.5]), np.dtype("int32"))
    (True, False)
    """
    if values.dtype.kind not in "iuf":
        return False
    if not values.size:
        return True
    if kind.kind in "iu":
        limits = np.iinfo(kind)
        integral = values.dtype.kind != "f" or bool((values == np.round(values)).all())
        return bool(integral and limits.min <= values.min() and values.max() <= limits.max)
    return values.dtype.kind != "f" or bool(np.abs(values).max() <= np.finfo(kind).max)


def to_array(data: Any, datatype: str, spec: TensorSpec, specs: list[TensorSpec]) -> np.ndarray:
    """The values of one input tensor (nested lists or flat) given as `datatype`, as an array
    of the model's datatype for that input.

    Raises:
        RequestError: 400 for an unknown or non-numeric datatype, or values that are not
            numbers of that datatype, or that the model's datatype cannot hold.
    """
    name = spec.name
    if datatype not in DATATYPES:
        raise RequestError(
            400, f"input `{name}`: unknown datatype {datatype!r} ({signature_text(specs)})"
        )
    if datatype not in NUMERIC:
        raise RequestError(
            400,
            f"input `{name}`: {datatype} values are not taken ({signature_text(specs)}; images "
            "as files go to /v1/models/NAME/classify-files)",
        )
    try:
        given = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # ragged lists, huge integers
        given = np.asarray([])
        fits = False
    else:
        fits = _fits(given, np.dtype(DATATYPES[datatype]))
    if not fits:
        raise RequestError(
            400, f"input `{name}`: its data are not {datatype} numbers ({signature_text(specs)})"
        )
    if given.dtype.kind == "f" and not np.isfinite(given).all():
        raise RequestError(400, f"input `{name}`: holds NaN or Inf values")
    target = np.dtype(DATATYPES[spec.datatype])
    if not _fits(given, target):
        raise RequestError(
            400,
            f"input `{name}`: its values do not fit {spec.datatype} ({signature_text(specs)})",
        )
    return given.astype(target)


def shaped(array: np.ndarray, shape: Any, spec: TensorSpec, specs: list[TensorSpec]) -> np.ndarray:
    """A tensor's values in its declared shape, checked against the model's input.

    Raises:
        RequestError: 400 when the shape is not a list of sizes, does not hold as many values
            as were given, or does not fit the model's input (any batch size).
    """
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise RequestError(
            400, f"input `{spec.name}`: shape must be a list of sizes; received {shape!r}"
        )
    if math.prod(shape) != array.size:
        raise RequestError(
            400,
            f"input `{spec.name}`: shape {shape} holds {math.prod(shape)} values; data has "
            f"{array.size}",
        )
    fits = len(shape) == len(spec.shape) and all(
        expected in (-1, size) for expected, size in zip(spec.shape, shape, strict=True)
    )
    if not fits:
        raise RequestError(
            400, f"input `{spec.name}`: shape {shape} does not fit; {signature_text(specs)}"
        )
    return array.reshape(shape)


def check_finite(values: np.ndarray, model_name: str) -> None:
    """A model's outputs, checked before they are written as JSON.

    Raises:
        RequestError: 500 naming the model when an output is NaN or Inf.
    """
    if not np.isfinite(values).all():
        raise RequestError(
            500,
            f"model {model_name} gave NaN or Inf outputs for this input; check the input's "
            "values (e.g. far outside the training data's range)",
        )
