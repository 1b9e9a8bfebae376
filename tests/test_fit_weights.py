"""`fit.class_weight`, `dataset.csv.weight` and `fit.validation_freq`, through the CLI."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from .helpers import Ran, invoke, run_cli

SPEC = """\
name: weighted
seed: 1
dataset:
  csv: {train: train.csv, test: test.csv, label: kind, weight: importance}
  validation_split: 0.2
model:
  input: [3]
  layers:
    - Dense: {units: 2, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 5
  batch_size: 16
  class_weight: balanced
  validation_freq: 2
  callbacks:
    - ReduceLROnPlateau: {monitor: loss, factor: 0.5, patience: 0, min_delta: 0.05}
"""


def write_tables(folder: Path, spec: str = SPEC, weights: list[float] | None = None) -> None:
    """300 training rows, one in five of the class `rare`, each with an importance."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    kinds = np.where(x[:, 0] > 0.8, "rare", "common")
    importance = weights or rng.uniform(0.5, 2, size=300).round(3).tolist()
    with (folder / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "importance", "kind"])
        writer.writerows(
            [*row.round(4), w, k] for row, w, k in zip(x, importance, kinds, strict=True)
        )
    with (folder / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "c", "kind"])
        writer.writerows([*row.round(4), k] for row, k in zip(x[:50], kinds[:50], strict=True))
    (folder / "spec.yaml").write_text(spec)


def dlcli(folder: Path, *arguments: str) -> Ran:
    """`dlcli ARGUMENTS` in `folder`, with an empty HOME."""
    return run_cli(arguments, None, folder, timeout=300)


def test_balanced_class_weights_a_weight_column_and_validation_every_second_epoch(
    tmp_path: Path,
) -> None:
    write_tables(tmp_path)
    result = dlcli(tmp_path, "train", "spec.yaml")
    assert result.returncode == 0, result.stderr
    found = re.search(
        r"^fit.class_weight balanced \(from the training labels\): common ([\d.]+), "
        r"rare ([\d.]+)$",
        result.stdout + result.stderr,
        re.MULTILINE,
    )
    assert found, result.stdout + result.stderr
    common, rare = map(float, found.groups())
    # each class weighs n / (2 * its count), so 1/common + 1/rare = 2 (to the 3 digits shown)
    assert common < 1 < rare and abs(1 / common + 1 / rare - 2) < 0.01
    with (tmp_path / "runs" / "weighted-1" / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["val_loss"] != "NA" for row in rows] == [False, True, False, True, False]
    assert (tmp_path / "runs" / "weighted-1" / "curves.png").is_file()
    # the epoch table: validation cells empty where not validated, and the learning rate,
    # which ReduceLROnPlateau halved after each epoch the loss fell by less than 0.05
    progress = result.stderr.splitlines()  # the epoch table goes with the progress, to stderr
    table = [line.split("│")[1:-1] for line in progress if "│" in line]
    header = next(line for line in progress if "┃ epoch" in line)
    assert [name.strip() for name in header.split("┃")[1:-1]] == [
        "epoch",
        "accuracy",
        "loss",
        "val_accuracy",
        "val_loss",
        "learning_rate",
        "time",
    ]
    assert [cells[3].strip() == "" for cells in table] == [True, False, True, False, True]
    rates = [float(cells[5]) for cells in table]
    assert rates[0] == 0.001 and all(
        b in (a, a / 2) for a, b in zip(rates, rates[1:], strict=False)
    )
    assert rates[-1] < rates[0]


def test_weights_of_zero_train_nothing(tmp_path: Path) -> None:
    """Every example weighs 0 (its column), so every loss is 0 and no weight moves: the
    weights reach the loss, in dlcli's compiled executions as in Keras's own loop."""
    spec = SPEC.split("  callbacks:")[0].replace("  class_weight: balanced\n", "")
    write_tables(tmp_path, spec, [0.0] * 300)
    result = dlcli(tmp_path, "train", "spec.yaml")
    assert result.returncode == 0, result.stderr
    with (tmp_path / "runs" / "weighted-1" / "history.csv").open(newline="") as handle:
        assert {float(row["loss"]) for row in csv.DictReader(handle)} == {0.0}
    assert "learning_rate" not in result.stderr  # it never changed: no column


@pytest.mark.parametrize(
    ("change", "exit_code", "message"),
    [
        (
            ("class_weight: balanced", "class_weight: {common: 1, unusual: 3}"),
            3,
            "`fit.class_weight`: no class `unusual`; the classes are common, rare (or 0 to 1 by "
            "index)",
        ),
        (
            ("class_weight: balanced", "class_weight: {5: 2.0}"),
            3,
            "`fit.class_weight`: no class `5`; the classes are common, rare (or 0 to 1 by index)",
        ),
        (
            ("weight: importance", "weight: importanse"),
            4,
            "train.csv: no weight column `importanse` (did you mean `importance`?); the columns "
            "are `a`, `b`, `c`, `importance`, `kind` (see dataset.csv.weight)",
        ),
    ],
)
def test_a_wrong_weight_is_one_line(
    tmp_path: Path, change: tuple[str, str], exit_code: int, message: str
) -> None:
    write_tables(tmp_path, SPEC.replace(*change))
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == exit_code, result.output
    assert result.stderr.splitlines()[-1].endswith(message), result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_negative_weight_names_its_line(tmp_path: Path) -> None:
    write_tables(tmp_path, weights=[1.0] * 6 + [-0.5] + [1.0] * 293)
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == 4, result.output
    assert result.stderr.splitlines()[-1].endswith(
        "train.csv, line 8, column `importance`: a weight must be 0 or more"
    )


def test_class_weights_need_a_classifier(tmp_path: Path) -> None:
    spec = SPEC.replace("units: 2, activation: softmax", "units: 1")
    spec = spec.replace("sparse_categorical_crossentropy", "mse").replace("[accuracy]", "[mae]")
    write_tables(tmp_path, spec)
    table = (tmp_path / "train.csv").read_text().replace("common", "0").replace("rare", "1")
    (tmp_path / "train.csv").write_text(table)
    test = (tmp_path / "test.csv").read_text().replace("common", "0").replace("rare", "1")
    (tmp_path / "test.csv").write_text(test)
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == 3, result.output
    assert result.stderr.splitlines()[-1] == (
        "Error: `fit.class_weight`: applies to a classifier, and this model's task is regression"
    )
