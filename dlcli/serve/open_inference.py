"""The Open Inference Protocol (v2) REST bodies, as kserve/open-inference-protocol's
`inference_rest.md` writes them: server and model metadata, and the inference request and
response (`data` flat in row-major order, or nested; answered flat).

A model's outputs are answered as tensors: a classifier's probabilities (a column per class,
`probabilities`) and its most probable class's name (`label`, BYTES); a regression's values
(`values`); a model of several outputs names them by output (`NAME`, `NAME_label`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli import __version__
from dlcli.data.common import Arrays
from dlcli.inference.predict import Scores
from dlcli.serve.served_model import PLATFORMS, ServedModel, output_names
from dlcli.serve.tensors import RequestError, check_finite, shaped, signature_text, to_array


def server_metadata() -> dict[str, Any]:
    """`GET /v2`: the server's name, version and extensions (none)."""
    return {"name": "dlcli", "version": __version__, "extensions": []}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    """`GET /v2/models/NAME`: the model's platform, inputs and outputs (-1: any size)."""
    return {
        "name": model.name,
        "platform": PLATFORMS[model.predictor.runtime_name],
        "inputs": [spec.metadata() for spec in model.inputs],
        "outputs": [spec.metadata() for spec in model.outputs],
    }


def _field(item: dict[str, Any], key: str, where: str) -> Any:
    if key not in item:
        raise RequestError(400, f"{where}: has no `{key}`")
    return item[key]


def infer_request(body: Any, model: ServedModel) -> tuple[str | None, Arrays, list[str] | None]:
    """The request's id, its input tensors (checked against the model's inputs) and the
    outputs it asks for (None: all).

    Raises:
        RequestError: 400 naming what is wrong and the model's signature.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with `inputs`")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, f"`id` must be a string; received {request_id!r}")
    inputs = _field(body, "inputs", "the request")
    specs = {spec.name: spec for spec in model.inputs}
    if not isinstance(inputs, list) or not all(isinstance(item, dict) for item in inputs):
        raise RequestError(
            400, f"`inputs` must be a list of tensors; {signature_text(model.inputs)}"
        )
    arrays: dict[str, np.ndarray] = {}
    for number, item in enumerate(inputs):
        name = _field(item, "name", f"inputs[{number}]")
        if name not in specs or name in arrays:
            said = "given twice" if name in arrays else "unknown input"
            raise RequestError(400, f"{said} `{name}`; {signature_text(model.inputs)}")
        where = f"input `{name}`"
        datatype = _field(item, "datatype", where)
        array = to_array(_field(item, "data", where), datatype, specs[name], model.inputs)
        arrays[name] = shaped(array, _field(item, "shape", where), specs[name], model.inputs)
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise RequestError(
            400, f"missing input `{'`, `'.join(missing)}`; {signature_text(model.inputs)}"
        )
    if len({len(array) for array in arrays.values()}) > 1:
        raise RequestError(400, "the inputs hold different numbers of examples (first axis)")
    return request_id, _one_or_all(arrays), _requested(body.get("outputs"), model)


def _one_or_all(arrays: dict[str, np.ndarray]) -> Arrays:
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _requested(outputs: Any, model: ServedModel) -> list[str] | None:
    if outputs is None:
        return None
    known = [spec.name for spec in model.outputs]
    if not isinstance(outputs, list) or not all(
        isinstance(item, dict) and item.get("name") in known for item in outputs
    ):
        raise RequestError(
            400, f'`outputs` must be a list of {{"name": ...}} of {", ".join(known)}'
        )
    return [item["name"] for item in outputs]


def output_tensors(model: ServedModel, scores: list[Scores]) -> dict[str, tuple[str, np.ndarray]]:
    """Each output tensor by name: its datatype and values (NaN or Inf refused: 500)."""
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for score in scores:
        check_finite(score.values, model.name)
        values, label = output_names(score)
        tensors[values] = ("FP32", score.values)
        if label:
            best = np.argmax(score.values, axis=1)
            tensors[label] = ("BYTES", np.array([score.labels[i] for i in best], dtype=object))
    return tensors


def infer_response(
    model: ServedModel, request_id: str | None, scores: list[Scores], requested: list[str] | None
) -> dict[str, Any]:
    """The inference response: the requested outputs (all when none were named)."""
    tensors = output_tensors(model, scores)
    response: dict[str, Any] = {"model_name": model.name}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = [
        {
            "name": name,
            "shape": list(values.shape),
            "datatype": datatype,
            "data": values.ravel().tolist(),
        }
        for name, (datatype, values) in tensors.items()
        if requested is None or name in requested
    ]
    return response
