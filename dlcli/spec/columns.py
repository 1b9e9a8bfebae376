"""Typed CSV columns in a spec (`dataset.csv.columns`, `crosses`) checked without Keras.

Each column's type is one of `keras.utils.FeatureSpace`'s feature types, with that type's own
arguments, read from the installed Keras through `dlcli.spec.keras_catalog` as every other
Keras name is. The checks that need the data (a column the header does not have) are made when
the table is read (`dlcli.data.csv_tables`).
"""

from __future__ import annotations

from collections.abc import Iterator

from dlcli.spec import keras_catalog
from dlcli.spec.keras_catalog import FEATURE_SPACE
from dlcli.spec.messages import KeyPath, suggest
from dlcli.spec.schema import NO_MODEL_INPUT, CsvSource, Spec

CATEGORICAL_TYPES = frozenset(
    {"string_categorical", "integer_categorical", "string_hashed", "integer_hashed"}
)


def column_problems(spec: Spec) -> Iterator[tuple[KeyPath, str]]:
    """(key path, what is wrong) for the model's input and each typed column of the spec.

    Example:
    >>> from dlcli.spec.schema import DatasetSpec, CsvSource
    >>> csv = CsvSource(train="a.csv", label="y", columns={"y": "string_categorical"})
    >>> list(_label_problems(csv))
    [(('dataset', 'csv', 'columns', 'y'), '`y` is the label column; leave it out of `columns`')]
    """
    csv = spec.dataset.csv
    typed = csv is not None and csv.columns is not None
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
    assert csv is not None and csv.columns is not None
    if model.inputs is not None:
        yield (
            ("model", "inputs"),
            "with `dataset.csv.columns` the model takes the encoded features as its one "
            "input: write a layer stack (`layers:`) without `input:`",
        )
    yield from _label_problems(csv)
    for column, feature in csv.columns.items():
        path: KeyPath = ("dataset", "csv", "columns", column)
        if csv.features is not None and column not in csv.features:
            yield path, f"`{column}` is not among `dataset.csv.features`; list it there too"
        known = keras_catalog.identifiers(FEATURE_SPACE)
        if feature.class_name not in known:
            hint = suggest(feature.class_name, known)
            yield (
                path,
                f"unknown FeatureSpace type `{feature.class_name}`{hint}; the types are "
                f"{', '.join(sorted(known))} (keras.utils.FeatureSpace)",
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


def _label_problems(csv: CsvSource) -> Iterator[tuple[KeyPath, str]]:
    """A label or weight column that `columns` also types."""
    assert csv.columns is not None
    labels = list(csv.labels.values()) if csv.labels else [csv.label or "label"]
    for column in csv.columns:
        path: KeyPath = ("dataset", "csv", "columns", column)
        if column in labels:
            yield path, f"`{column}` is the label column; leave it out of `columns`"
        elif column == csv.weight:
            yield path, f"`{column}` is the weight column; leave it out of `columns`"
