"""The search as the spec states it: what is optimised and in which direction, where trials
are scored, the values a trial takes as `--set` overrides, and the spec a study belongs to.
Nothing here imports TensorFlow or Optuna."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import yaml

from dlcli.data.common import resolve_path
from dlcli.errors import ConfigError
from dlcli.spec.schema import DatasetSpec, Distribution, SearchSpec, Spec

# Keras's own metric names whose best value is the lowest; anything named *loss or *error too
_LOWER_IS_BETTER = re.compile(
    r"(loss|error|mae|mse|rmse|mape|msle|hinge|crossentropy|kl_divergence|poisson|logcosh)$"
)
_HIGHER_IS_BETTER = re.compile(
    r"(accuracy|acc|auc|precision|recall|f1_score|fbeta_score|r2_score|iou)$"
)


def direction(metric: str, stated: str | None) -> str:
    """ "maximize" or "minimize": as `search.direction` states, or from the metric's name.

    Example:
        >>> direction("val_loss", None), direction("val_accuracy", None)
        ('minimize', 'maximize')
        >>> direction("val_species_mae", None)
        'minimize'
    """
    if stated is not None:
        return stated
    if _LOWER_IS_BETTER.search(metric):
        return "minimize"
    if _HIGHER_IS_BETTER.search(metric):
        return "maximize"
    raise ConfigError(
        f"`search.metric` {metric}: cannot tell from its name whether higher or lower is "
        "better; add `search.direction: maximize` or `minimize`"
    )


def has_validation(dataset: DatasetSpec, spec_dir: Path) -> bool:
    """Whether the data has a validation split (`validation_split`, or one in the files)."""
    if dataset.validation_split > 0:
        return True
    source = dataset.csv or dataset.images
    if source is not None:
        return source.validation is not None
    if dataset.npz is not None:
        try:
            with zipfile.ZipFile(resolve_path(dataset.npz.path, spec_dir)) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            return True  # the data loader names what is wrong with the file
        key = dataset.npz.x_validation
        return any(name == f"{key}.npy" or name.startswith(f"{key}_") for name in names)
    return False


def check_search(spec: Spec, spec_path: Path) -> None:
    """Refuse a spec `dlcli tune` cannot search: no `search:` section, or no validation split.

    Raises:
        ConfigError: one line naming what to add.
    """
    if spec.search is None:
        raise ConfigError(
            f"{spec_path}: no `search:` section; dlcli tune needs one, e.g. search: {{metric: "
            "val_accuracy, trials: 20, space: {fit.batch_size: {choice: [64, 128]}}}"
        )
    if not has_validation(spec.dataset, spec_path.parent):
        raise ConfigError(
            f"{spec_path}: the data has no validation split, and trials are scored on one "
            "(never on the test split): add `dataset.validation_split: 0.1` (or "
            "--set dataset.validation_split=0.1)"
        )
    direction(spec.search.metric, spec.search.direction)


def sample(trial: Any, space: dict[str, Distribution]) -> dict[str, Any]:
    """One value per key of the space, drawn by the Optuna `trial` (its sampler decides).

    A choice that is a mapping or a list (an optimizer with its arguments) is stored in the
    study as its YAML text, since a study's storage holds only numbers, strings and booleans.
    """
    values: dict[str, Any] = {}
    for key, distribution in space.items():
        if distribution.choice is not None:
            options = {stored_value(choice): choice for choice in distribution.choice}
            values[key] = options[trial.suggest_categorical(key, list(options))]
        elif distribution.int_range is not None:
            low, high = distribution.int_range
            step = int(distribution.step or 1)
            values[key] = trial.suggest_int(key, low, high, step=step, log=distribution.log)
        else:
            assert distribution.float_range is not None
            lowest, highest = distribution.float_range
            values[key] = trial.suggest_float(
                key, lowest, highest, step=distribution.step, log=distribution.log
            )
    return values


def stored_value(value: Any) -> Any:
    """A value as Optuna stores it: itself, or the YAML text of a mapping or list."""
    return yaml_text(value) if isinstance(value, dict | list) else value


def first_trials(search: SearchSpec) -> list[dict[str, Any]]:
    """`search.first_trials` as the study stores parameter values."""
    return [
        {key: stored_value(value) for key, value in trial.items()}
        for trial in search.first_trials or []
    ]


def yaml_text(value: Any) -> str:
    """A value as one line of YAML that reads back as the same value (1e-05 does not: YAML 1.1
    reads it as text; this writes 1.0e-05).

    Example:
        >>> yaml_text(1.2e-05), yaml_text({"SGD": {"learning_rate": 0.1}}), yaml_text("relu")
        ('1.2e-05', '{SGD: {learning_rate: 0.1}}', 'relu')
    """
    text = yaml.safe_dump([value], default_flow_style=True, width=float("inf"))
    return text.strip()[1:-1]


def as_overrides(values: dict[str, Any]) -> list[str]:
    """`--set` strings for sampled values.

    Example:
        >>> as_overrides({"fit.batch_size": 64, "compile.optimizer.Adam.learning_rate": 1e-05})
        ['fit.batch_size=64', 'compile.optimizer.Adam.learning_rate=1.0e-05']
    """
    return [f"{key}={yaml_text(value)}" for key, value in values.items()]


def column_names(keys: list[str]) -> dict[str, str]:
    """Short names for the table: the last part of each key path, longer where two clash.

    Example:
        >>> column_names(["model.layers[2].Dense.units", "fit.batch_size"])
        {'model.layers[2].Dense.units': 'units', 'fit.batch_size': 'batch_size'}
        >>> column_names(["model.layers[1].Dense.units", "model.layers[2].Dense.units"])
        {'model.layers[1].Dense.units': 'layers[1].Dense.units', 'model.layers[2].Dense.units': 'layers[2].Dense.units'}
    """  # noqa: E501
    parts = {key: key.split(".") for key in keys}
    for length in range(1, max((len(p) for p in parts.values()), default=1) + 1):
        names = {key: ".".join(p[-length:]) for key, p in parts.items()}
        if len(set(names.values())) == len(names):
            return names
    return {key: key for key in keys}


def study_key(spec: Spec) -> str:
    """What makes two `dlcli tune` runs one study: the spec, but not how many trials or seconds
    are spent on it (raising `search.trials` continues a study)."""
    assert spec.search is not None
    data = json.loads(spec.model_dump_json(by_alias=True))
    data["search"].pop("trials")
    data["search"].pop("timeout")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def study_seed(spec: Spec, key: str) -> int:
    """The seed every trial trains with (the same validation split and starting weights for
    all): the spec's, or one derived from the study, the same in every process."""
    return spec.seed if spec.seed is not None else int(key[:8], 16) % 2**31


def relocated(spec: Spec, spec_dir: Path, folder: Path) -> Spec:
    """The spec with its relative file paths rewritten to start from `folder` (best.yaml's)."""

    def moved(path: str | None) -> str | None:
        if path is None or Path(path).is_absolute():
            return path
        return os.path.relpath(os.path.abspath(resolve_path(path, spec_dir)), folder)

    dataset = spec.dataset
    updates: dict[str, Any] = {}
    if dataset.npz is not None:
        updates["npz"] = dataset.npz.model_copy(update={"path": moved(dataset.npz.path)})
    for kind in ("csv", "images"):
        source = getattr(dataset, kind)
        if source is not None:
            paths = {
                split: moved(getattr(source, split)) for split in ("train", "validation", "test")
            }
            updates[kind] = source.model_copy(update=paths)
    fit = spec.fit.model_copy(update={"initial_weights": moved(spec.fit.initial_weights)})
    return spec.model_copy(update={"dataset": dataset.model_copy(update=updates), "fit": fit})
