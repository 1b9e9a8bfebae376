"""The model of time windows: raw windows in, normalised by the training rows inside the model.

A spec of `dataset.csv.windows` writes its layers for windows of shape (sequence_length,
features), `model.input` left out or given. The model is built from the spec as written (so a
mistake names its own `model.layers[i]`), then a Normalization layer holding each feature's
mean and variance over the training rows (dlcli.data.time_windows.Series) is put in front of
it: model.keras takes the raw rows of a CSV file, and `evaluate` and `predict` cannot drift
from training.
"""

from __future__ import annotations

from typing import Any

from dlcli.spec.schema import LayerSpec, ModelSpec

NORMALIZATION_NAME = "window_normalization"


def window_input(model_spec: ModelSpec, series: Any) -> ModelSpec:
    """The model spec with its input the shape of one window, where `input` is left out."""
    if model_spec.input is not None:
        return model_spec
    shape = [series.windows.sequence_length, len(series.features)]
    return model_spec.model_copy(update={"input": shape})


def with_normalization(model: Any, model_spec: ModelSpec, series: Any) -> tuple[Any, ModelSpec]:
    """The built layer stack with the training rows' Normalization in front, and the model spec
    that lists that layer first (so that `adapt_preprocessing` pairs each layer with its spec
    and leaves this one, whose statistics are given, as it is).

    The layer computes in float32 whatever the precision policy: raw values (a pressure in
    the thousands) lose their detail in bfloat16.
    """
    import keras

    normalization = keras.layers.Normalization(
        axis=-1,
        mean=series.mean,
        variance=series.variance,
        name=NORMALIZATION_NAME,
        dtype="float32",
    )
    front = keras.Sequential(
        [keras.Input(shape=model.input_shape[1:]), normalization, *model.layers],
        name=model.name,
    )
    written = LayerSpec(
        class_name="Normalization",
        config={"axis": -1, "mean": series.mean, "variance": series.variance},
    )
    return front, model_spec.model_copy(update={"layers": [written, *model_spec.layers]})
