"""Typed CSV columns encoded by `keras.utils.FeatureSpace`, adapted on the training rows.

The model is trained on the encoded features (a float32 array, so XLA and the compiled loop
apply as for any table), and saved with the FeatureSpace in front of it: the saved model takes
the raw columns (text, integers, numbers) by name, as keras-io's "Structured data
classification with FeatureSpace" builds its inference model. Encoding for training goes
through the very preprocessing model that is saved, so predict cannot drift from training.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dlcli.data.common import Split, Splits
from dlcli.errors import ConfigError
from dlcli.spec.messages import format_path
from dlcli.spec.schema import CsvSource

ENCODE_BATCH_SIZE = 4096


def column_batches(
    columns: dict[str, Any], order: list[str], batch_size: int = ENCODE_BATCH_SIZE
) -> Any:
    """A tf.data.Dataset of the raw columns in batches, each column of shape (batch, 1), as
    FeatureSpace's inputs take them, in the `order` of the model's inputs (Keras warns of a
    mapping in another order)."""
    import tensorflow as tf

    data = {name: columns[name] for name in order}
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(batch_size)
    return dataset.map(lambda batch: {name: tf.expand_dims(v, -1) for name, v in batch.items()})


def adapt_encoder(source: CsvSource, columns: dict[str, Any]) -> Any:
    """The FeatureSpace of the spec's typed columns (the others as `float`), adapted on the
    training `columns`, as a keras.Model from the raw columns to the encoded features.

    Raises:
        ConfigError: Keras refuses a type's arguments (e.g. `num_bins: 0`).
    """
    import keras

    feature_space = keras.utils.FeatureSpace
    features: dict[str, Any] = {}
    for name in columns:
        written = (source.columns or {}).get(name)
        if written is None:
            features[name] = feature_space.float(name=name)
            continue
        try:
            features[name] = getattr(feature_space, written.class_name)(**written.config)
        except (TypeError, ValueError) as error:
            path = format_path(("dataset", "csv", "columns", name, written.class_name))
            raise ConfigError(f"`{path}`: {' '.join(str(error).split())}") from error
    crosses = [
        feature_space.cross(
            feature_names=tuple(cross.features),
            crossing_dim=cross.crossing_dim,
            output_mode=cross.output_mode,
        )
        for cross in source.crosses or []
    ]
    space = feature_space(features=features, crosses=crosses or None, output_mode="concat")
    batches = column_batches(columns, list(columns))
    space.adapt(batches.map(lambda batch: {k: v[:, 0] for k, v in batch.items()}))
    return keras.Model(space.get_inputs(), space.get_encoded_features(), name="feature_space")


def encode(encoder: Any, columns: dict[str, Any]) -> Any:
    """The raw columns of a split -> the encoded features, float32 of shape (rows, width)."""
    import numpy as np

    batches = column_batches(columns, list(encoder.input))
    with _same_structure():
        parts = [np.asarray(encoder(batch)) for batch in batches]
    return np.concatenate(parts).astype(np.float32, copy=False)


def encoded_splits(encoder: Any, splits: Splits) -> Splits:
    """Every split's raw columns replaced by their encoded features."""
    import dataclasses

    def one(split: Split | None) -> Split | None:
        if split is None:
            return None
        return dataclasses.replace(split, x=encode(encoder, split.x))

    train = one(splits.train)
    assert train is not None
    test = train if splits.test_is_train else one(splits.test)
    assert test is not None
    return dataclasses.replace(splits, train=train, validation=one(splits.validation), test=test)


def with_encoder(encoder: Any, model: Any) -> Any:
    """The model to save: the FeatureSpace's raw columns in, the trained model's outputs out."""
    import keras

    return keras.Model(encoder.input, model(encoder.output), name=model.name)


def predict_raw(model: Any, columns: dict[str, Any], batch_size: int) -> Any:
    """The saved model's outputs for raw columns (dlcli evaluate and predict)."""
    with _same_structure():
        return model.predict(column_batches(columns, list(model.input), batch_size), verbose=0)


@contextmanager
def _same_structure() -> Iterator[None]:
    """Keras 3.15 warns that a mapping of the inputs by name "doesn't match the expected
    structure" though it is that very mapping; the warning is left out, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        yield


def as_tensors(model: Any, columns: dict[str, Any]) -> dict[str, Any]:
    """Raw columns as tensors of shape (rows, 1), in the order of the model's inputs."""
    import tensorflow as tf

    return {name: tf.constant(columns[name].reshape(-1, 1)) for name in model.input}
