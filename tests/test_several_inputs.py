"""Models of several inputs and outputs, end to end: the shipped iris configs trained, evaluated
and predicted through the installed CLI (empty HOME), named .npz arrays, and each mistake of
the data against the model as one line."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from .helpers import REPO, accuracy_of, invoke, run_cli

IRIS_TEST = REPO / "configs" / "data" / "iris_test.csv"


def dlcli_json(model: Path) -> dict:
    with zipfile.ZipFile(model) as archive:
        return json.loads(archive.read("dlcli.json"))


def model_of(stdout: str) -> str:
    found = re.search(r"^Model: (.+)$", stdout, re.MULTILINE)
    assert found, stdout
    return found[1]


def test_the_two_input_iris_config_trains_evaluates_and_predicts(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    spec = REPO / "configs" / "iris_two_inputs.yaml"
    result = run_cli(["train", str(spec)], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr
    assert accuracy_of(result.stdout) >= 0.9
    model = tmp_path / model_of(result.stdout)
    info = dlcli_json(model)
    assert info["input"] is None and info["class_names"] == ["setosa", "versicolor", "virginica"]
    assert {name: item["feature_names"] for name, item in info["inputs"].items()} == {
        "sepal": ["sepal_length", "sepal_width"],
        "petal": ["petal_length", "petal_width"],
    }

    result = run_cli(["evaluate", str(model)], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"accuracy (0\.9\d+|1\.0000)", result.stdout), result.stdout
    assert "virginica" in result.stdout  # the per-class table

    # predict takes rows with all the columns (in any order, extra ones ignored)
    result = run_cli(
        ["predict", "--model", str(model), str(IRIS_TEST), "--csv", "--top-k", "1"],
        user_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv_rows(result.stdout))
    truth = [line.split(",")[-1] for line in IRIS_TEST.read_text().split()[1:]]
    assert len(rows) == 30
    assert sum(row[2] == true for row, true in zip(rows, truth, strict=True)) >= 27

    missing = tmp_path / "sepals.csv"
    missing.write_text("sepal_length,sepal_width\n5.1,3.5\n")
    result = run_cli(["predict", "--model", str(model), str(missing)], user_env, tmp_path)
    assert result.returncode == 7
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {missing}: has no column petal_length, petal_width (the model takes "
        "sepal_length, sepal_width, petal_length, petal_width)"
    )


def csv_rows(text: str) -> list[list[str]]:
    return [line.split(",") for line in text.strip().splitlines()[1:]]


def test_the_two_output_iris_config_reports_each_output(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    spec = REPO / "configs" / "iris_two_outputs.yaml"
    result = run_cli(["train", str(spec), "--set", "fit.epochs=1"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"On the test set: .*petal_width_mae \d\.\d+.*species_accuracy", result.stdout)
    model = tmp_path / model_of(result.stdout)
    info = dlcli_json(model)
    assert info["task"] == "multioutput"
    assert info["outputs"] == {
        "species": {"task": "multiclass", "class_names": ["setosa", "versicolor", "virginica"]},
        "petal_width": {"task": "regression", "class_names": None},
    }

    result = run_cli(["evaluate", str(model)], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Output `species` (multiclass)" in result.stdout
    assert re.search(r"Output `petal_width` \(regression\)\nMAE \d", result.stdout)
    evaluation = json.loads((model.parent / "evaluation.json").read_text())
    assert set(evaluation["outputs"]) == {"species", "petal_width"}
    assert evaluation["outputs"]["species"]["confusion_matrix"]["labels"][0] == "setosa"
    assert evaluation["outputs"]["petal_width"]["metrics"].keys() == {"loss", "mae"}
    assert (model.parent / "confusion_matrix-species.png").stat().st_size > 0

    result = run_cli(
        ["predict", "--model", str(model), str(IRIS_TEST), "--csv", "--top-k", "1"],
        user_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "input,row,output,label_1,probability_1,value"
    assert [line.split(",")[1:3] for line in lines[1:3]] == [["0", "species"], ["0", "petal_width"]]
    assert lines[1].split(",")[3] in ("setosa", "versicolor", "virginica")
    float(lines[2].split(",")[-1])

    result = run_cli(["runs", "--json"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)["runs"]
    assert run["metric"]["name"] == "species_accuracy" and run["status"] == "finished"


NPZ_SPEC = """\
name: named_arrays
seed: 3
dataset: {npz: arrays.npz}
model:
  inputs:
    - {name: left, shape: [2]}
    - {name: right, shape: [3]}
  layers:
    - Normalization: {name: left_scaled, from: left}
    - Concatenate: {name: both, from: [left_scaled, right]}
    - Dense: {name: hidden, units: 8, activation: relu, from: both}
    - Dense: {name: kind, units: 1, activation: sigmoid, from: hidden}
    - Dense: {name: size, units: 1, from: hidden}
  outputs: [kind, size]
compile:
  optimizer: adam
  loss: {kind: binary_crossentropy, size: mse}
  metrics: {kind: [accuracy], size: [mae]}
fit: {epochs: 2, batch_size: 8}
"""


def write_arrays(folder: Path, sizes: tuple[int, int] = (40, 12), **changes: np.ndarray) -> None:
    """x_train_left/right and y_train_kind/size, and the test arrays, of `sizes` (train, test):
    `kind` is left[0] > 100."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, rows in zip(("train", "test"), sizes, strict=True):
        left = rng.normal(100, 10, size=(rows, 2)).astype("float32")
        right = rng.normal(size=(rows, 3)).astype("float32")
        arrays |= {
            f"x_{split}_left": left,
            f"x_{split}_right": right,
            f"y_{split}_kind": (left[:, 0] > 100).astype("float32"),
            f"y_{split}_size": right.sum(axis=1),
        }
    np.savez(folder / "arrays.npz", **(arrays | changes))
    (folder / "spec.yaml").write_text(NPZ_SPEC)


def test_npz_arrays_named_per_input_and_output_on_20_rows(tmp_path: Path) -> None:
    """x_train_NAME / y_train_NAME arrays of 20 rows feed the inputs and outputs of those names
    (`dlcli train` in-process, one epoch); `evaluate --data` reads the test arrays by name and
    reports each output."""
    write_arrays(tmp_path, sizes=(20, 8))
    result = invoke(["train", "spec.yaml", "--set", "fit.epochs=1"])
    assert result.exit_code == 0, result.output
    assert re.search(r"On the test set: .*kind_accuracy \d\.\d+.*size_mae", result.stdout)
    model = tmp_path / model_of(result.stdout)
    assert set(dlcli_json(model)["inputs"]) == {"left", "right"}
    result = invoke(["evaluate", str(model), "--data", str(tmp_path / "arrays.npz")])
    assert result.exit_code == 0, result.output
    assert "Output `kind` (binary)" in result.stdout
    assert "Output `size` (regression)" in result.stdout


@pytest.mark.slow  # the same through the installed CLI in subprocesses, 40 rows, two epochs
def test_npz_arrays_named_per_input_and_output_train_and_evaluate(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    write_arrays(tmp_path)
    result = run_cli(["train", "spec.yaml"], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"On the test set: .*kind_accuracy \d\.\d+.*size_mae", result.stdout)
    model = tmp_path / model_of(result.stdout)
    assert set(dlcli_json(model)["inputs"]) == {"left", "right"}
    data = tmp_path / "arrays.npz"
    result = run_cli(["evaluate", str(model), "--data", str(data)], user_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Output `kind` (binary)" in result.stdout and "Output `size` (regression)" in (
        result.stdout
    )


TWO_INPUTS = """\
name: two
dataset:
  csv: {train: train.csv, label: kind, COLUMNS}
model:
  inputs: [{name: a, shape: [2]}, {name: b, shape: [1]}]
  layers:
    - Concatenate: {name: both, from: [a, b]}
    - Dense: {name: kind, units: 2, activation: softmax}
compile: {loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 1, class_weight: CLASS_WEIGHT}
"""


@pytest.mark.parametrize(
    ("columns", "class_weight", "code", "message"),
    [
        (
            "features: [x1, x2, x3]",
            "null",
            4,
            "the model has 2 inputs (`a`, `b`), but the dataset gives one array; map columns to "
            "each with `dataset.csv.inputs`, or name .npz arrays x_train_NAME",
        ),
        (
            "inputs: {a: [x1, x2], c: [x3]}",
            "null",
            4,
            "the dataset gives the inputs `a`, `c`, but the model's inputs are `a`, `b`",
        ),
        (
            "inputs: {a: [x1, x2, x3], b: [x3]}",
            "null",
            4,
            "train `a` data has examples of shape (3,) but the model input is (2,); change its "
            "`shape` in `model.inputs` or its columns",
        ),
        (
            "inputs: {a: [x1, x2], b: [x9]}",
            "null",
            4,
            "train.csv: no feature column `x9`; the columns are `x1`, `x2`, `x3`, `kind` "
            "(see dataset.csv.inputs)",
        ),
        (
            "inputs: {a: [x1, x2], b: [kind]}",
            "null",
            4,
            "train.csv: `kind` is both the label and a feature; leave it out of dataset.csv.inputs",
        ),
        (
            "features: [x1], inputs: {a: [x1, x2], b: [x3]}",
            "null",
            3,
            "`dataset.csv`: give `features` (one model input) or `inputs` (columns by model input "
            "name), not both (spec.yaml, line 3)",
        ),
    ],
)
def test_data_that_does_not_fit_the_inputs_is_one_line(
    tmp_path: Path, columns: str, class_weight: str, code: int, message: str
) -> None:
    rows = ["x1,x2,x3,kind", *(f"{i},{i % 3},{i % 5},{'ab'[i % 2]}" for i in range(20))]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = TWO_INPUTS.replace("COLUMNS", columns).replace("CLASS_WEIGHT", class_weight)
    (tmp_path / "spec.yaml").write_text(spec)
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("edit", "changes", "code", "message"),
    [
        (
            "",
            {"x_train": np.zeros((40, 2))},
            4,
            "arrays.npz: holds both `x_train` and `x_train_left`; give one array `x_train`, or one "
            "`x_train_NAME` per model input or output",
        ),
        (
            "",
            {"y_train_size": np.zeros(39, "float32")},
            4,
            "arrays.npz: `x_train_left` has 40 rows but `y_train_size` has 39",
        ),
        (
            "loss: {kind: binary_crossentropy, size: mse}|"
            "loss: {kind: binary_crossentropy, width: mse}",
            {},
            3,
            "`compile.loss` names `width`, which is not an output of the model; its outputs are "
            "`kind`, `size`",
        ),
        (
            "fit: {epochs: 2, batch_size: 8}|fit: {epochs: 2, class_weight: balanced}",
            {},
            3,
            "`fit.class_weight`: applies to a model of one output, and this one has 2; weigh the "
            "outputs' losses with `compile.loss_weights`",
        ),
        (
            "",
            {"y_train_kind": np.full(40, 2.0, "float32")},
            4,
            "train `kind` labels must be between 0 and 1 for binary classification; 40 are not, "
            "the first at index 0",
        ),
    ],
)
def test_named_arrays_that_do_not_fit_are_one_line(
    tmp_path: Path, edit: str, changes: dict[str, np.ndarray], code: int, message: str
) -> None:
    write_arrays(tmp_path, **changes)
    if edit:
        old, new = edit.split("|")
        (tmp_path / "spec.yaml").write_text(NPZ_SPEC.replace(old, new))
    result = invoke(["train", "spec.yaml"])
    assert result.exit_code == code, result.output
    assert result.stderr.splitlines()[-1].endswith(message), result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
