"""Small tables written in the spec itself (`dataset.inline`: the XOR points)."""

from __future__ import annotations

import numpy as np

from dlcli.data.common import DatasetInfo, Loaded, Split, check_finite, numeric_rows
from dlcli.errors import DataError
from dlcli.spec.schema import InlineSource


def load_inline(source: InlineSource) -> Loaded:
    """Arrays written in the spec itself."""

    def split(x: list, y: list, x_name: str, y_name: str) -> Split:
        try:
            features = np.asarray(x, dtype="float32")
        except (ValueError, TypeError) as error:
            raise DataError(
                f"dataset.inline.{x_name}: not a rectangular table of numbers"
            ) from error
        try:
            labels = numeric_rows(np.asarray(y), f"dataset.inline.{y_name}", labels=True)
        except ValueError as error:
            raise DataError(
                f"dataset.inline.{y_name}: not a rectangular table of labels"
            ) from error
        if len(features) != len(labels):
            raise DataError(
                f"dataset.inline: {x_name} has {len(features)} rows but its labels {len(labels)}"
            )
        check_finite(f"dataset.inline.{x_name}", features)
        return Split(features, labels)

    train = split(source.x, source.y, "x", "y")
    test = None
    if source.x_test is not None or source.y_test is not None:
        test = split(source.x_test or [], source.y_test or [], "x_test", "y_test")
    return train, None, test, DatasetInfo(source="inline")
