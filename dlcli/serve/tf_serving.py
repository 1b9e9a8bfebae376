"""TensorFlow Serving's REST bodies, as its `api_rest.md` writes them: the model status, and
the predict request in the row (`instances`) or columnar (`inputs`) format, answered as
`predictions` or `outputs`.

The outputs are the tensors of `dlcli.serve.open_inference` (probabilities and label of a
classifier, values of a regression): a row is one object of them per instance, or a list of
values when there is only one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.data.common import Arrays
from dlcli.inference.predict import Scores
from dlcli.serve.open_inference import output_tensors
from dlcli.serve.served_model import ServedModel
from dlcli.serve.tensors import RequestError, TensorSpec, shaped, signature_text, to_array

SIGNATURE = "serving_default"


def status(model: ServedModel) -> dict[str, Any]:
    """`GET /v1/models/NAME`: the one version's state."""
    return {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE" if model.ready else "LOADING",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def _tensor(data: Any, spec: TensorSpec, specs: list[TensorSpec]) -> np.ndarray:
    array = to_array(data, spec.datatype, spec, specs)
    return shaped(array, list(array.shape), spec, specs)


def predict_request(body: Any, model: ServedModel) -> tuple[Arrays, bool]:
    """The request's input tensors, and whether it is in the columnar format.

    Raises:
        RequestError: 400 naming what is wrong and the model's signature.
    """
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise RequestError(
            400, 'the body must be a JSON object with either "instances" or "inputs", not both'
        )
    signature = body.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise RequestError(
            400, f"unknown signature_name {signature!r}; the model has {SIGNATURE!r}"
        )
    specs = model.inputs
    names = [spec.name for spec in specs]
    if "inputs" in body:
        given = body["inputs"]
        if len(specs) == 1 and not (isinstance(given, dict) and list(given) == names):
            return _tensor(given, specs[0], specs), True
        if not isinstance(given, dict) or sorted(given) != sorted(names):
            raise RequestError(400, f"`inputs` must name every input; {signature_text(specs)}")
        return {spec.name: _tensor(given[spec.name], spec, specs) for spec in specs}, True
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, f"`instances` must be a non-empty list; {signature_text(specs)}")
    if all(isinstance(item, dict) for item in instances):
        if not all(sorted(item) == sorted(names) for item in instances):
            raise RequestError(400, f"each instance must name every input; {signature_text(specs)}")
        columns = {spec.name: [item[spec.name] for item in instances] for spec in specs}
    elif len(specs) == 1:
        columns = {specs[0].name: instances}
    else:
        raise RequestError(
            400, f"each instance must be an object of inputs; {signature_text(specs)}"
        )
    arrays = {spec.name: _tensor(columns[spec.name], spec, specs) for spec in specs}
    return (arrays[names[0]] if len(specs) == 1 else arrays), False


def predict_response(model: ServedModel, scores: list[Scores], columnar: bool) -> dict[str, Any]:
    """`{"predictions": ...}` (row format) or `{"outputs": ...}` (columnar format)."""
    tensors = {name: values.tolist() for name, (_, values) in output_tensors(model, scores).items()}
    if columnar:
        return {"outputs": next(iter(tensors.values())) if len(tensors) == 1 else tensors}
    if len(tensors) == 1:
        return {"predictions": next(iter(tensors.values()))}
    rows = len(next(iter(tensors.values())))
    return {
        "predictions": [
            {name: values[row] for name, values in tensors.items()} for row in range(rows)
        ]
    }
