"""dlcli.json as a typed schema (dlcli.model.artifact.ModelInfo), and files written with the umask.

The documents (`helpers.info_document`, `helpers.classifier_document`) and the `classifier`
fixture (conftest.py) are shared with other test modules."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dlcli.errors import ModelFileError
from dlcli.model import artifact
from dlcli.model.artifact import ModelInfo
from dlcli.utils import atomic

from .helpers import IMAGE, classifier_document, with_dlcli_json


def edited(**changes: Any) -> dict[str, Any]:
    return classifier_document(**changes)


def without(key: str) -> dict[str, Any]:
    document = classifier_document()
    del document[key]
    return document


def nested(path: str, value: Any) -> dict[str, Any]:
    """classifier_document() with the value at `a.b.c` replaced (or added)."""
    document = classifier_document()
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node[key] = dict(node[key])
        node = node[key]
    node[last] = value
    return document


# Found by inspect (no TensorFlow): the document itself is wrong.
SCHEMA_EDITS = {
    "extra key in input.image": (
        nested("input.image.bit_depth", 8),
        "`input.image`: unknown key `bit_depth`; valid keys: height, width, channels, polarity, "
        "framing",
    ),
    "spec removed": (without("spec"), "`spec` is required but missing"),
    "training removed": (without("training"), "`training` is required but missing"),
    "integer class names": (
        edited(class_names=[0, 1, 2]),
        "`class_names[0]` must be a valid string. Received: 0",
    ),
    "batch_size 0": (
        nested("spec.fit.batch_size", 0),
        "`spec.fit.batch_size` must be greater than 0. Received: 0",
    ),
    "misspelt spec key": (
        nested("spec.fit.epoch", 3),
        "`spec.fit`: unknown key `epoch` (did you mean `epochs`?); valid keys: epochs, "
        "batch_size, shuffle, callbacks, class_weight, validation_freq, initial_weights, freeze, "
        "fine_tune",
    ),
    "wrong task": (
        edited(task="classification"),
        "`task` must be 'multiclass', 'binary', 'multilabel', 'regression' or 'multioutput'. "
        "Received: 'classification'",
    ),
    "binary with 3 class names": (
        edited(task="binary"),
        "`class_names` has 3 names but a binary classifier has 2",
    ),
    "regression with class names": (
        edited(task="regression"),
        "`class_names` is given but `task` is regression",
    ),
    "a class named twice": (
        edited(class_names=["a", "b", "a"]),
        "`class_names` names `a` more than once",
    ),
    "format as text": (edited(format="1"), "`format` must be 1. Received: '1'"),
    "image channels 2": (
        nested("input.image.channels", 2),
        "`input.image.channels` must be 1, 3 or 4. Received: 2",
    ),
    "shape that is not the image's": (
        nested("input.shape", [5, 5, 1]),
        "`input`: `shape` [5, 5, 1] does not fit `image` (4x4, 1 channel(s))",
    ),
    "digest that is not sha256": (
        nested("dataset.digest", "abc"),
        "`dataset.digest` must match pattern '^[0-9a-f]{64}$'. Received: 'abc'",
    ),
    "evaluated on an unknown split": (
        nested("metrics.evaluated_on", "val"),
        "`metrics.evaluated_on` must be 'test', 'train' or 'validation'. Received: 'val'",
    ),
    "versions as text": (
        edited(versions="3"),
        "`versions` must be a valid dictionary or instance of Versions. Received: '3'",
    ),
    "negative split size": (
        nested("dataset.sizes", {"train": -1}),
        "`dataset.sizes.train` must be greater than or equal to 0. Received: -1",
    ),
    "feature names for an image model": (
        nested("input.feature_names", ["x"]),
        "`input`: `feature_names` has 1 names but `shape` is [4, 4, 1]",
    ),
}

# Found by load, against the model: the document is well-formed but describes another model.
MODEL_EDITS = {
    "9 class names for 3 outputs": (
        edited(class_names=list("abcdefghi")),
        "`class_names` has 9 names but the model has 3 outputs",
    ),
    "binary task for 3 outputs": (
        edited(task="binary", class_names=["no", "yes"]),
        "`task` is binary (one sigmoid output) but the model has 3 outputs",
    ),
    "image of another size": (
        nested(
            "input",
            {
                **classifier_document()["input"],
                "shape": [5, 5, 1],
                "image": {**IMAGE, "height": 5, "width": 5},
            },
        ),
        "`input.shape` is [5, 5, 1] but the model takes (4, 4, 1)",
    ),
}


@pytest.mark.parametrize(("document", "message"), SCHEMA_EDITS.values(), ids=SCHEMA_EDITS.keys())
def test_a_hand_edited_dlcli_json_is_one_line_naming_the_key(
    classifier: Path, tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    path = with_dlcli_json(classifier, tmp_path / "model.keras", document)
    with pytest.raises(ModelFileError) as caught:
        artifact.inspect(path)
    assert str(caught.value) == f"{path}: dlcli.json: {message}"


@pytest.mark.parametrize(("document", "message"), MODEL_EDITS.values(), ids=MODEL_EDITS.keys())
def test_a_dlcli_json_of_another_model_is_refused_on_load(
    classifier: Path, tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    path = with_dlcli_json(classifier, tmp_path / "model.keras", document)
    assert artifact.inspect(path).info is not None  # well-formed on its own
    with pytest.raises(ModelFileError) as caught:
        artifact.load(path)
    assert str(caught.value) == f"{path}: dlcli.json: {message}"


def test_the_unedited_dlcli_json_loads_typed(classifier: Path) -> None:
    loaded = artifact.load(classifier)
    assert loaded.metadata == ModelInfo.model_validate(classifier_document())
    assert loaded.metadata.input.describe() == "4x4 grayscale images"
    assert loaded.metadata.spec.fit.batch_size == 2


def test_a_newer_format_asks_to_upgrade(classifier: Path, tmp_path: Path) -> None:
    document = {**classifier_document(format=2), "calibration": {"temperature": 1.5}}
    path = with_dlcli_json(classifier, tmp_path / "model.keras", document)
    with pytest.raises(ModelFileError) as caught:
        artifact.inspect(path)
    assert str(caught.value) == (
        f"{path}: dlcli.json: format 2 was written by a newer dlcli (this is dlcli 0.1.0, which "
        "reads format 1); upgrade dlcli: pip install --upgrade dlcli"
    )


# ---------------------------------------------------------------------------------------------
# Files get the mode of the user's umask


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_saved_and_written_files_follow_the_umask(
    classifier: Path, tmp_path: Path, umask: int, mode: int
) -> None:
    """model.keras and every JSON file written get the mode the umask gives (not mkstemp's 0600)."""
    loaded = artifact.load(classifier)
    folder = tmp_path / "out"
    folder.mkdir()
    previous = os.umask(umask)
    atomic.file_mode.cache_clear()  # the umask is read once per process
    try:
        artifact.save(loaded.model, loaded.metadata, folder / "model.keras")
        artifact.write_json(folder / "metrics.json", {"loss": 0.5})
    finally:
        os.umask(previous)
        atomic.file_mode.cache_clear()
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert modes == {"model.keras": mode, "metrics.json": mode}
