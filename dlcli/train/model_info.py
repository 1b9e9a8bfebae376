"""The dlcli.json a trained model carries: the spec, the data, the task, inputs and outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlcli import __version__
from dlcli.model.artifact import FORMAT_VERSION, ModelInfo
from dlcli.model.signature import tasks_of

if TYPE_CHECKING:
    from dlcli.train.pipeline import Prepared


def model_info(prepared: Prepared, results: dict[str, Any]) -> ModelInfo:
    """The dlcli.json embedded in model.keras (`results` holds its `metrics` and `training`)."""
    import keras
    import tensorflow as tf

    info = prepared.splits.info
    train_x = prepared.splits.train.x
    several: dict[str, Any] = {}
    if prepared.encoder is not None:  # typed CSV columns, text: the saved model takes them raw
        kinds = info.column_kinds or {}
        dtypes = {"string": "string", "text": "string", "integer": "int32", "number": "float32"}
        several["inputs"] = {
            name: {"shape": [1], "dtype": dtypes[kind], "feature_names": [name]}
            for name, kind in kinds.items()
        }
    elif isinstance(train_x, dict):
        features = info.input_features or {}
        several["inputs"] = {
            name: {
                "shape": list(array.shape[1:]),
                "dtype": str(array.dtype),
                "feature_names": features.get(name),
            }
            for name, array in train_x.items()
        }
    if prepared.task == "multioutput":
        classes = info.output_classes or {}
        tasks = tasks_of(prepared.spec.compile.loss, prepared.model)
        several["outputs"] = {
            name: {"task": task, "class_names": classes.get(name)} for name, task in tasks.items()
        }
    return ModelInfo.model_validate(
        {
            "format": FORMAT_VERSION,
            "versions": {
                "dlcli": __version__,
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            },
            "spec": prepared.spec,
            "dataset": {
                "source": info.source,
                "digest": info.digest,
                "sizes": info.sizes,
                "skipped": info.skipped,
            },
            "task": prepared.task,
            "class_names": info.class_names,
            "input": None
            if several.get("inputs")
            else {
                "shape": list(train_x.shape[1:]),
                "dtype": str(train_x.dtype),
                "feature_names": info.feature_names,
                "image": None if info.image is None else info.image.__dict__,
            },
            "columns": None
            if info.missing is None
            else {
                "kinds": info.column_kinds or dict.fromkeys(info.feature_names or [], "number"),
                "encoded": int(train_x.shape[1]) if prepared.encoder is not None else None,
                "missing": info.missing.policy,
                "fill": info.missing.fill,
            },
            **several,
            **results,
        }
    )
