"""Typed CSV columns in a spec (`dataset.csv.columns`, `crosses`) checked without Keras.

Each column's type is one of `keras.utils.FeatureSpace`'s feature types, with that type's own
arguments, or `text` with the arguments of `keras.layers.TextVectorization` (as are those of a
text folder source, `dataset.text_folders.text`); all are read from the installed Keras through
`dlcli.spec.keras_catalog` as every other Keras name is. The checks that need the data (a
column the header does not have) are made when the table is read (`dlcli.data.csv_tables`).

A text column of `output_mode: int` gives a sequence of token indices per row (for an
`Embedding`); FeatureSpace cannot concatenate it with other columns (it concatenates encoded
values, not indices), so such a column must be the only feature column of its table.
"""

from __future__ import annotations

from collections.abc import Iterator

from dlcli.spec import keras_catalog
from dlcli.spec.keras_catalog import FEATURE_SPACE
from dlcli.spec.messages import KeyPath, suggest
from dlcli.spec.schema import NO_MODEL_INPUT, CsvSource, DatasetSpec, KerasObject, Spec

CATEGORICAL_TYPES = frozenset(
    {"string_categorical", "integer_categorical", "string_hashed", "integer_hashed"}
)
TEXT = "text"  # a column of free text, vectorized by keras.layers.TextVectorization
TEXT_LAYER = "TextVectorization"
TEXT_OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")  # TextVectorization's
# TextVectorization's arguments that a model trained on dense arrays cannot take
TEXT_REFUSED = {
    "ragged": "dlcli feeds dense arrays, so the output cannot be ragged",
    "sparse": "dlcli feeds dense arrays, so the output cannot be sparse",
    "name": "dlcli names the layer after the column",
}


def is_sequence(feature: KerasObject) -> bool:
    """Whether a typed column is text vectorized to token indices (`output_mode: int`, the
    default of TextVectorization)."""
    return feature.class_name == TEXT and feature.config.get("output_mode", "int") == "int"


def typed_columns(dataset: DatasetSpec) -> dict[str, KerasObject] | None:
    """The typed columns of a dataset: `dataset.csv.columns`, or for text folders the one
    column `text` of the texts; None for the other sources.

    Example:
    >>> from dlcli.spec.schema import DatasetSpec
    >>> dataset = DatasetSpec(text_folders={"train": "t", "text": {"max_tokens": 9}})
    >>> typed_columns(dataset)
    {'text': KerasObject(class_name='text', config={'max_tokens': 9})}
    """
    if dataset.csv is not None:
        return dataset.csv.columns
    if dataset.text_folders is not None:
        return {TEXT: KerasObject(class_name=TEXT, config=dict(dataset.text_folders.text))}
    return None


def text_problems(config: dict[str, object], path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """(key path, what is wrong) for the TextVectorization arguments of a text column (`path`
    is where they are written)."""
    arguments = keras_catalog.arguments("layers", TEXT_LAYER)
    assert arguments is not None
    for argument, value in config.items():
        where: KeyPath = (*path, str(argument))
        if argument not in arguments[0]:
            hint = suggest(str(argument), arguments[0])
            yield where, f"`{TEXT}` (keras.layers.{TEXT_LAYER}) has no argument `{argument}`{hint}"
        elif argument in TEXT_REFUSED and (argument == "name" or value):
            yield where, f"`{argument}` is not taken here: {TEXT_REFUSED[str(argument)]}"
    mode = config.get("output_mode", "int")
    if mode not in TEXT_OUTPUT_MODES:
        hint = suggest(str(mode), TEXT_OUTPUT_MODES)
        yield (
            (*path, "output_mode"),
            f"`output_mode` must be one of {', '.join(TEXT_OUTPUT_MODES)}{hint}. "
            f"Received: {mode!r}",
        )
    elif mode == "int" and config.get("output_sequence_length") is None:
        yield (
            path,
            "`output_mode: int` (TextVectorization's default) gives token sequences, which "
            "need `output_sequence_length` (every text padded or cut to that many tokens, the "
            "model's input length); or choose `output_mode: multi_hot`, `count` or `tf_idf`",
        )


def column_problems(spec: Spec) -> Iterator[tuple[KeyPath, str]]:
    """(key path, what is wrong) for the model's input and each typed column of the spec.

    Example:
    >>> from dlcli.spec.schema import DatasetSpec, CsvSource
    >>> csv = CsvSource(train="a.csv", label="y", columns={"y": "string_categorical"})
    >>> list(_label_problems(csv))
    [(('dataset', 'csv', 'columns', 'y'), '`y` is the label column; leave it out of `columns`')]
    """
    csv, folders = spec.dataset.csv, spec.dataset.text_folders
    typed = (csv is not None and csv.columns is not None) or folders is not None
    windowed = csv is not None and csv.windows is not None
    model = spec.model
    if model.input is None and model.inputs is None and not (typed or windowed):
        yield ("model",), NO_MODEL_INPUT
    if windowed and model.inputs is not None:
        yield (
            ("model", "inputs"),
            "with `dataset.csv.windows` the model takes the windows as its one input: write a "
            "layer stack (`layers:`, `input:` may be left out)",
        )
    if not typed:
        return
    if model.inputs is not None:
        key = "dataset.csv.columns" if csv is not None else "dataset.text_folders"
        yield (
            ("model", "inputs"),
            f"with `{key}` the model takes the encoded features as its one "
            "input: write a layer stack (`layers:`) without `input:`",
        )
    if folders is not None:
        yield from text_problems(folders.text, ("dataset", "text_folders", "text"))
        return
    assert csv is not None and csv.columns is not None
    yield from _label_problems(csv)
    for column, feature in csv.columns.items():
        path: KeyPath = ("dataset", "csv", "columns", column)
        if csv.features is not None and column not in csv.features:
            yield path, f"`{column}` is not among `dataset.csv.features`; list it there too"
        if feature.class_name == TEXT:
            yield from text_problems(feature.config, (*path, TEXT))
            continue
        known = keras_catalog.identifiers(FEATURE_SPACE)
        if feature.class_name not in known:
            hint = suggest(feature.class_name, [*known, TEXT])
            yield (
                path,
                f"unknown FeatureSpace type `{feature.class_name}`{hint}; the types are "
                f"{', '.join(sorted(known))} (keras.utils.FeatureSpace), and {TEXT} "
                f"(keras.layers.{TEXT_LAYER})",
            )
            continue
        arguments = keras_catalog.arguments(FEATURE_SPACE, feature.class_name)
        assert arguments is not None
        for argument in feature.config:
            if argument not in arguments[0]:
                hint = suggest(str(argument), arguments[0])
                yield (
                    (*path, feature.class_name, argument),
                    f"`{feature.class_name}` has no argument `{argument}`{hint}",
                )
        missing = sorted(arguments[1] - set(feature.config))
        if missing:
            yield path, f"`{feature.class_name}` needs the argument `{missing[0]}`"
    yield from _sequence_problems(csv)
    for index, cross in enumerate(csv.crosses or []):
        for position, column in enumerate(cross.features):
            where: KeyPath = ("dataset", "csv", "crosses", index, "features", position)
            if column not in csv.columns:
                hint = suggest(column, csv.columns)
                yield where, f"`{column}` is not a typed column (a key of `columns`){hint}"
            elif csv.columns[column].class_name not in CATEGORICAL_TYPES:
                kind = csv.columns[column].class_name
                yield (
                    where,
                    f"`{column}` is {kind}; a cross combines categorical or hashed columns",
                )


def _sequence_problems(csv: CsvSource) -> Iterator[tuple[KeyPath, str]]:
    """A text column of token sequences beside other feature columns, as far as the spec shows
    (the header shows the rest, `dlcli.data.csv_tables`)."""
    assert csv.columns is not None
    for column, feature in csv.columns.items():
        if not is_sequence(feature):
            continue
        others = [name for name in csv.features or csv.columns if name != column]
        if others:
            listed = ", ".join(f"`{name}`" for name in others)
            yield (
                ("dataset", "csv", "columns", column),
                sequence_alone(column, listed),
            )


def sequence_alone(column: str, others: str) -> str:
    """What is wrong with a text column of token sequences beside the columns `others`."""
    return (
        f"`{column}` is text as token sequences (`output_mode: int`, for an Embedding), which "
        f"cannot be concatenated with other columns ({others}); make it the only feature "
        f"(`dataset.csv.features: [{column}]`), or give it `output_mode: multi_hot`, `count` "
        "or `tf_idf`"
    )


def _label_problems(csv: CsvSource) -> Iterator[tuple[KeyPath, str]]:
    """A label or weight column that `columns` also types."""
    assert csv.columns is not None
    labels = csv.label_columns
    for column in csv.columns:
        path: KeyPath = ("dataset", "csv", "columns", column)
        if column in labels:
            yield path, f"`{column}` is the label column; leave it out of `columns`"
        elif column == csv.weight:
            yield path, f"`{column}` is the weight column; leave it out of `columns`"
