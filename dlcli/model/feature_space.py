"""Typed CSV columns encoded by `keras.utils.FeatureSpace`, adapted on the training rows.

The model is trained on the encoded features (a float32 array, so XLA and the compiled loop
apply as for any table), and saved with the FeatureSpace in front of it: the saved model takes
the raw columns (text, integers, numbers) by name, as keras-io's "Structured data
classification with FeatureSpace" builds its inference model. Encoding for training goes
through the very preprocessing model that is saved, so predict cannot drift from training.

A text column (`{text: {...}}`, and the texts of text folders) is a FeatureSpace feature with a
custom preprocessor (`FeatureSpace.feature`): a `keras.layers.TextVectorization` of the spec's
arguments, adapted on the training texts. Its multi_hot, count or tf_idf values are
concatenated with the other columns'; its token sequences (`output_mode: int`, int64 of shape
(rows, output_sequence_length)) are the model's input as they are, the table's only column.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from dlcli.data.common import Split, Splits
from dlcli.errors import ConfigError, DataError
from dlcli.spec.columns import TEXT, is_sequence, typed_columns
from dlcli.spec.messages import KeyPath, format_path
from dlcli.spec.schema import CrossSpec, KerasObject, Spec

ENCODE_BATCH_SIZE = 4096
MAX_ENCODED_BYTES = 4 * 1024**3  # the encoded features of all splits, held in memory


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


def adapt_encoder(
    types: dict[str, KerasObject],
    columns: dict[str, Any],
    *,
    crosses: list[CrossSpec] | None = None,
    where: KeyPath | None = None,
) -> Any:
    """The FeatureSpace of the typed columns `types` (the others as `float`), adapted on the
    training `columns`, as a keras.Model from the raw columns to the encoded features.

    Args:
        types: column -> its FeatureSpace type, or `text` with TextVectorization's arguments
            (`dlcli.spec.columns.typed_columns`).
        columns: the training split's raw columns.
        crosses: `dataset.csv.crosses`.
        where: the spec's key of the arguments, for messages; None: a CSV column's
            (`dataset.csv.columns.COLUMN.TYPE`).

    Raises:
        ConfigError: Keras refuses a type's arguments (e.g. `num_bins: 0`).

    Example:
        encoder = adapt_encoder(spec.dataset.csv.columns, splits.train.x)
    """
    import keras

    feature_space = keras.utils.FeatureSpace
    features: dict[str, Any] = {}
    sequences = False
    for name in columns:
        written = types.get(name)
        if written is None:
            features[name] = feature_space.float(name=name)
            continue
        path = where or ("dataset", "csv", "columns", name, written.class_name)
        try:
            if written.class_name == TEXT:
                sequences = sequences or is_sequence(written)
                features[name] = _text_feature(name, written, columns[name])
            else:
                features[name] = getattr(feature_space, written.class_name)(**written.config)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"`{format_path(path)}`: {' '.join(str(error).split())}") from error
    cross_features = [
        feature_space.cross(
            feature_names=tuple(cross.features),
            crossing_dim=cross.crossing_dim,
            output_mode=cross.output_mode,
        )
        for cross in crosses or []
    ]
    space = feature_space(
        features=features,
        crosses=cross_features or None,
        output_mode="dict" if sequences else "concat",  # FeatureSpace concatenates no indices
    )
    batches = column_batches(columns, list(columns))
    space.adapt(batches.map(lambda batch: {k: v[:, 0] for k, v in batch.items()}))
    encoded = space.get_encoded_features()
    if sequences:  # the one column (dlcli.spec.columns): its token indices as they are
        (encoded,) = encoded.values()
    return keras.Model(space.get_inputs(), encoded, name="feature_space")


def adapt_spec(spec: Spec, columns: dict[str, Any]) -> Any:
    """The encoder of a spec's typed columns (or text folders), adapted on the training
    `columns` (see `adapt_encoder`)."""
    types = typed_columns(spec.dataset)
    assert types is not None
    if spec.dataset.text_folders is not None:
        return adapt_encoder(types, columns, where=("dataset", "text_folders", "text"))
    assert spec.dataset.csv is not None
    return adapt_encoder(types, columns, crosses=spec.dataset.csv.crosses)


def encoding_note(spec: Spec, encoder: Any) -> str:
    """What the model's input is, in words, for a spec of typed columns or text folders.

    Example: "7 columns encoded by keras.utils.FeatureSpace into 32 values (adapted on the
    training rows)"; "texts vectorized by keras.layers.TextVectorization into 2000 tf_idf
    values (adapted on the training texts)".
    """
    width = int(encoder.output.shape[-1])
    types = typed_columns(spec.dataset) or {}
    sequences = any(is_sequence(feature) for feature in types.values())
    if sequences:
        what = f"sequences of {width} token indices"
    elif spec.dataset.text_folders is not None:
        what = f"{width} {spec.dataset.text_folders.text.get('output_mode')} values"
    else:
        what = f"{width} values"
    if spec.dataset.text_folders is not None:
        return (
            f"texts vectorized by keras.layers.TextVectorization into {what} (adapted on the "
            "training texts)"
        )
    count = len(encoder.input)
    texts = [name for name, feature in types.items() if feature.class_name == TEXT]
    vectorized = f" ({', '.join(texts)} by keras.layers.TextVectorization)" if texts else ""
    return (
        f"{count} column{'s' if count != 1 else ''} encoded by keras.utils.FeatureSpace"
        f"{vectorized} into {what} (adapted on the training rows)"
    )


def string_preprocessing(kinds: Iterable[str]) -> str:
    """What a model of raw columns of these kinds (`dlcli.data.csv_tables.ColumnKind`) does
    with strings, which tf2onnx has no form for.

    >>> string_preprocessing(["text", "number"]), string_preprocessing(["string"])
    ("TextVectorization's string operations", "FeatureSpace's string lookups")
    """
    return (
        "TextVectorization's string operations"
        if "text" in kinds
        else "FeatureSpace's string lookups"
    )


def _text_feature(name: str, written: KerasObject, texts: Any) -> Any:
    """A FeatureSpace feature of a text column: TextVectorization with the spec's arguments,
    adapted on the training `texts`, behind a Reshape that gives it the rank-1 strings it
    takes (FeatureSpace's inputs are of shape (rows, 1), whose output shape Keras 3.15's
    TextVectorization gets wrong for every `output_mode` but `int`)."""
    import keras
    import tensorflow as tf

    vectorizer = keras.layers.TextVectorization(**written.config, name=f"{name}_vectorizer")
    if "vocabulary" not in written.config:  # a vocabulary given is used as it is
        vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(ENCODE_BATCH_SIZE))
    preprocessor = keras.Sequential(
        [
            keras.Input(shape=(1,), dtype="string"),
            keras.layers.Reshape((), name=f"{name}_texts"),
            vectorizer,
        ],
        name=f"{name}_text",
    )
    return keras.utils.FeatureSpace.feature(
        dtype="string",
        preprocessor=preprocessor,
        output_mode="int" if is_sequence(written) else "float",
    )


def encode(encoder: Any, columns: dict[str, Any]) -> Any:
    """The raw columns of a split -> the encoded features: float32 of shape (rows, width), or
    a text column's token indices, int64 of shape (rows, output_sequence_length)."""
    import numpy as np

    batches = column_batches(columns, list(encoder.input))
    with _same_structure():
        parts = [np.asarray(encoder(batch)) for batch in batches]
    encoded = np.concatenate(parts)
    return encoded if encoded.dtype.kind in "iu" else encoded.astype(np.float32, copy=False)


def check_encoded_size(encoder: Any, splits: Splits) -> None:
    """Refuse features too large to hold in memory once encoded, before encoding them.

    Raises:
        DataError: the examples of all splits times the encoded width take more than
            `MAX_ENCODED_BYTES`.
    """
    from dlcli.data.common import rows

    width = int(encoder.output.shape[-1])
    held = [splits.train, splits.validation, None if splits.test_is_train else splits.test]
    examples = sum(rows(split.x) for split in held if split is not None)
    size = examples * width * 4
    if size > MAX_ENCODED_BYTES:
        raise DataError(
            f"the encoded features would take {size / 1024**3:.1f} GiB ({examples} examples x "
            f"{width} values), more than {MAX_ENCODED_BYTES // 1024**3} GiB: lower a text "
            "column's `max_tokens` (or use `output_mode: int` with an Embedding)"
        )


def encoded_splits(encoder: Any, splits: Splits) -> Splits:
    """Every split's raw columns replaced by their encoded features (`check_encoded_size`
    first)."""
    import dataclasses

    check_encoded_size(encoder, splits)

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
