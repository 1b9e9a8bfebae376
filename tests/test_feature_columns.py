"""Typed CSV columns (keras.utils.FeatureSpace), empty cells and integer class codes.

End to end through the CLI in a subprocess with an empty HOME and cache, on the shipped
penguins data (strings, empty cells, an unseen category at predict) and on a tiny generated
table coded 1/2; then the reader in detail, and the mistakes, one line each.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlcli.data.csv_tables import MISSING_INTEGER, MISSING_TEXT, load_csv, read_columns
from dlcli.errors import ConfigError, DataError
from dlcli.spec.load import spec_from_text
from dlcli.spec.schema import CsvSource

from .helpers import REPO, invoke, run_cli

PENGUINS = (REPO / "configs" / "penguins.yaml").read_text()
WHERE = "configs/penguins.yaml"


def _pets(rows: int, seed: int) -> str:
    """A tiny table: a string column with empty cells, an integer column, a number column
    with empty cells, and classes coded 1 and 2 (as the UCR archive codes them)."""
    generator = np.random.default_rng(seed)
    lines = ["weight,color,age,kind"]
    for index in range(rows):
        color = ["white", "black", "brown"][index % 3]
        weight = (
            "" if index % 7 == 3 else f"{(10 if color == 'white' else 20) + generator.normal():.2f}"
        )
        written = "" if index % 9 == 4 else color
        code = 1 if color == "white" else 2
        lines.append(f"{weight},{written},{index % 5 + 1},{code}")
    return "\n".join(lines) + "\n"


PETS_SPEC = """\
name: pets
seed: 1
dataset:
  csv:
    train: pets.csv
    test: pets_test.csv
    label: kind
    columns: {color: string_categorical, age: integer_categorical, weight: float_normalized}
model:
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 2, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.05}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 10
  batch_size: 8
"""


@pytest.mark.xdist_group("feature_columns_e2e")
def test_penguins_train_evaluate_predict_on_raw_rows(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """The shipped config, 5 epochs: the run says what it did with the columns and empty cells;
    evaluate on the saved model (raw columns in) gives the training-time test figures exactly,
    so the saved FeatureSpace encodes as training did; predict takes raw rows with an empty
    cell, an empty category and an island never seen in training."""
    (tmp_path / "data").mkdir()
    for name in ("penguins_train.csv", "penguins_test.csv"):
        shutil.copy(REPO / "configs" / "data" / name, tmp_path / "data" / name)
    (tmp_path / "penguins.yaml").write_text(PENGUINS)
    trained = run_cli(["train", "penguins.yaml", "--set", "fit.epochs=5"], user_env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    output = trained.stdout + trained.stderr
    assert "Features: 7 columns encoded by keras.utils.FeatureSpace into 32 values" in output
    assert "Empty numeric cells filled with the training mean: `bill_length_mm` 2" in output
    assert "model.onnx not written: tf2onnx has no form for FeatureSpace's string lookups" in output
    assert "Traceback" not in output
    found = re.search(r"On the test set: accuracy (\S+), loss (\S+)", trained.stdout)
    assert found, trained.stdout
    assert float(found.group(1)) >= 0.9
    model = tmp_path / "runs" / "penguins-1" / "model.keras"
    evaluated = run_cli(["evaluate", str(model), "--json"], user_env, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert f"{metrics['accuracy']:.4f}" == found.group(1)
    assert f"{metrics['loss']:.4f}" == found.group(2)
    (tmp_path / "rows.csv").write_text(
        "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
        "Biscoe,50.0,15.2,225,5400,male,2008\n"
        "Torgersen,38.9,,181,3700,,2007\n"
        "Atlantis,46.5,17.9,195,3500,female,2031\n"  # an island and a year never seen
    )
    predicted = run_cli(["predict", "rows.csv", "--json"], user_env, tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert "Runtime: Keras (TensorFlow)" in predicted.stderr
    labels = [row["top_k"][0]["label"] for row in json.loads(predicted.stdout)["predictions"]]
    assert labels[:2] == ["Gentoo", "Adelie"] and labels[2] in ("Adelie", "Chinstrap", "Gentoo")


@pytest.mark.xdist_group("feature_columns_e2e")
def test_class_codes_1_and_2_are_class_names(tmp_path: Path, user_env: dict[str, str]) -> None:
    """Labels coded 1 and 2 for a 2-unit output are class names, said once, recorded and
    printed as written; `label_kind: indices` refuses them as indices beyond the output."""
    (tmp_path / "pets.csv").write_text(_pets(40, 0))
    (tmp_path / "pets_test.csv").write_text(_pets(20, 1))
    (tmp_path / "pets.yaml").write_text(PETS_SPEC)
    trained = run_cli(["train", "pets.yaml"], user_env, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert (
        "Labels: the integer codes 1, 2 of `kind` are class names (they are not the indices of "
        "the 2-unit output); `dataset.csv.label_kind: indices` refuses them instead"
    ) in trained.stderr
    (tmp_path / "rows.csv").write_text("kind,weight,color,age\n1,10.1,white,2\n2,,purple,9\n")
    predicted = run_cli(["predict", "rows.csv", "--json"], user_env, tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)["predictions"]
    assert {item["label"] for item in rows[0]["top_k"]} == {"1", "2"}
    from dlcli.inference.inputs import MemoryInput
    from dlcli.inference.predict import open_predictor

    model = tmp_path / "runs" / "pets-1" / "model.keras"
    uploaded = open_predictor(model).predict(
        [MemoryInput("rows.csv", (tmp_path / "rows.csv").read_bytes())]
    )
    from_bytes = uploaded.to_dict()["predictions"]  # the bytes of an upload, as the file
    assert [r["top_k"][0]["label"] for r in from_bytes] == [r["top_k"][0]["label"] for r in rows]
    for mine, theirs in zip(from_bytes, rows, strict=True):
        got = [item["probability"] for item in mine["top_k"]]
        assert got == pytest.approx([item["probability"] for item in theirs["top_k"]], abs=1e-6)
    refused = run_cli(
        ["train", "pets.yaml", "--set", "dataset.csv.label_kind=indices"], user_env, tmp_path
    )
    assert refused.returncode == 4
    assert refused.stderr.startswith(
        "Error: train labels must be class indices 0..1 for a 2-unit output;"
    ), refused.stderr


def _coded_flowers(rows: int, seed: int, codes: tuple[int, ...] = (3, 5, 7)) -> str:
    """Two measures; `kind` coded 3, 5 or 7 (the larger the first measure, the larger the code)
    and `size`, a number, from them."""
    rng = np.random.default_rng(seed)
    lines = ["first,second,kind,size"]
    for _ in range(rows):
        index = int(rng.integers(len(codes)))
        first, second = index + rng.normal(0, 0.1), rng.normal(0, 1)
        lines.append(f"{first:.3f},{second:.3f},{codes[index]},{first + second:.3f}")
    return "\n".join(lines) + "\n"


TWO_OUTPUTS_SPEC = """\
name: coded
seed: 3
dataset:
  csv: {train: flowers.csv, test: flowers_test.csv, labels: {kind: kind, size: size}}
model:
  inputs: [{name: measures, shape: [2]}]
  layers:
    - Dense: {name: hidden, units: 16, activation: relu, from: measures}
    - Dense: {name: kind, units: 3, activation: softmax, from: hidden}
    - Dense: {name: size, units: 1, from: hidden}
  outputs: [kind, size]
compile:
  optimizer: {Adam: {learning_rate: 0.05}}
  loss: {kind: sparse_categorical_crossentropy, size: mse}
  metrics: {kind: [accuracy]}
fit: {epochs: 30, batch_size: 16}
output: {onnx: false}
"""


def test_class_codes_of_one_output_of_several_are_its_class_names(tmp_path: Path) -> None:
    """A graph model of two outputs whose classifier's labels are coded 3, 5 and 7: the codes
    are that output's class names, said once, recorded, and printed by evaluate and predict;
    a code the training labels lack is one line naming it."""
    (tmp_path / "flowers.csv").write_text(_coded_flowers(90, 0))
    (tmp_path / "flowers_test.csv").write_text(_coded_flowers(30, 1))
    (tmp_path / "spec.yaml").write_text(TWO_OUTPUTS_SPEC)
    trained = invoke(["train", "spec.yaml"])
    assert trained.exit_code == 0, trained.output
    assert trained.stderr.count("Labels: ") == 1
    assert (
        "Labels: the integer codes 3, 5, 7 of `kind` are class names (they are not the indices "
        "of the 3-unit output `kind`); `dataset.csv.label_kind: indices` refuses them instead\n"
    ) in trained.stderr
    model = tmp_path / "runs" / "coded-1" / "model.keras"
    with zipfile.ZipFile(model) as archive:
        recorded = json.loads(archive.read("dlcli.json"))["outputs"]
    assert recorded["kind"]["class_names"] == ["3", "5", "7"]
    assert recorded["size"]["class_names"] is None
    evaluated = invoke(["evaluate", str(model), "--data", "flowers_test.csv", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    kind = json.loads(evaluated.stdout)["outputs"]["kind"]
    assert list(kind["classes"]) == ["3", "5", "7"] and kind["metrics"]["accuracy"] >= 0.9
    (tmp_path / "rows.csv").write_text("first,second\n0.0,0.5\n2.0,-0.5\n")
    predicted = invoke(["predict", "rows.csv", "--json"])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)["predictions"]
    kinds = [row["top_k"][0]["label"] for row in rows if row["output"] == "kind"]
    assert kinds == ["3", "7"]

    (tmp_path / "flowers_test.csv").write_text(_coded_flowers(30, 1, codes=(3, 5, 9)))
    refused = invoke(["train", "spec.yaml"])
    assert refused.exit_code == 4
    assert refused.stderr.splitlines()[-1] == (
        "Error: the test labels hold the code 9, which the training labels do not have (their "
        "codes are 3, 5, 7)"
    )


# ---------------------------------------------------------------------------------------------
# The reader


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_typed_columns_are_read_raw_with_their_empty_cells(tmp_path: Path) -> None:
    _write(tmp_path, "t.csv", "y,color,n,w\na,white,1,1.5\nb,,,\nb, black ,3,2.5\n")
    columns = {"color": "string_categorical", "n": "integer_categorical"}
    train, _, _, info = load_csv(CsvSource(train="t.csv", label="y", columns=columns), tmp_path)
    assert train.x["color"].tolist() == ["white", MISSING_TEXT, "black"]
    assert train.x["n"].tolist() == [1, MISSING_INTEGER, 3]
    assert train.x["w"].tolist() == [1.5, 2.0, 2.5]  # the training mean
    assert info.column_kinds == {"color": "string", "n": "integer", "w": "number"}
    assert info.missing.fill == {"w": 2.0}
    assert info.missing.note() == (
        "Empty numeric cells filled with the training mean: `w` 1 (with 2); "
        "`dataset.csv.missing: drop|error` to choose otherwise"
    )


def test_missing_drop_and_the_fill_a_model_recorded(tmp_path: Path) -> None:
    _write(tmp_path, "t.csv", "y,a,b\n0,1,\n1,2,3\n0,,5\n1,4,6\n")
    train, _, _, info = load_csv(CsvSource(train="t.csv", label="y", missing="drop"), tmp_path)
    assert train.x.tolist() == [[2, 3], [4, 6]] and train.y.tolist() == [1, 1]
    assert info.missing.note() == (
        "Rows with empty numeric cells left out (dataset.csv.missing: drop): 2 in t.csv"
    )
    train, _, _, _ = load_csv(
        CsvSource(train="t.csv", label="y"), tmp_path, fill={"a": 9.0, "b": 8.0}
    )
    assert train.x.tolist() == [[1, 8], [2, 3], [9, 5], [4, 6]]


def test_pyarrow_and_the_python_reader_agree(tmp_path: Path) -> None:
    """A cell with spaces around a number is refused by pyarrow and read by the Python reader:
    the file then reads exactly as its clean twin does through pyarrow."""
    clean = 'label,a,b,c\n0,1.5,x,\n1,2,"y\nz",4\n'
    _write(tmp_path, "clean.csv", clean)
    _write(tmp_path, "spaced.csv", clean.replace("1.5", " 1.5 "))
    typed = {"b": "string_categorical"}
    first = load_csv(CsvSource(train="clean.csv", columns=typed), tmp_path)[0]
    second = load_csv(CsvSource(train="spaced.csv", columns=typed), tmp_path)[0]
    for name in ("a", "b", "c"):
        assert first.x[name].tolist() == second.x[name].tolist()
    assert first.x["b"].tolist() == ["x", "y\nz"]  # a quoted newline
    assert first.y.tolist() == second.y.tolist() == [0, 1]


def test_label_kinds_as_written(tmp_path: Path) -> None:
    _write(tmp_path, "t.csv", "y,a\n3,1\n7,2\n5,3\n")
    names = load_csv(CsvSource(train="t.csv", label="y", label_kind="names"), tmp_path)
    assert names[3].class_names == ["3", "5", "7"] and names[0].y.tolist() == [0, 2, 1]
    numbers = load_csv(CsvSource(train="t.csv", label="y", label_kind="numbers"), tmp_path)[0]
    assert numbers.y.dtype == np.float32 and numbers.y.tolist() == [3, 7, 5]


def test_read_columns_fills_as_recorded_and_names_a_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "rows.csv", "color,w,extra\nred,,1\n,2,1\n")
    kinds = {"color": "string", "w": "number"}
    columns = read_columns(path, kinds, policy="mean", fill={"w": 7.0})  # type: ignore[arg-type]
    assert columns["w"].tolist() == [7.0, 2.0] and columns["color"].tolist() == [
        "red",
        MISSING_TEXT,
    ]
    with pytest.raises(DataError) as raised:
        read_columns(path, {"colour": "string"}, policy="mean", fill={})  # type: ignore[dict-item]
    assert str(raised.value) == (
        f"{path}: no column `colour` (did you mean `color`?); the model takes the columns `colour`"
    )


# ---------------------------------------------------------------------------------------------
# Mistakes, one line each


def _penguins(old: str, new: str) -> str:
    assert old in PENGUINS, old
    return PENGUINS.replace(old, new, 1)


SPEC_MISTAKES = [
    (
        _penguins("sex: string_categorical", "sex: strng_categorical"),
        "`dataset.csv.columns.sex`: unknown FeatureSpace type `strng_categorical` (did you mean "
        "`string_categorical`?); the types are float, float_discretized, float_normalized, "
        "float_rescaled, integer_categorical, integer_hashed, string_categorical, string_hashed "
        "(keras.utils.FeatureSpace), and text (keras.layers.TextVectorization) "
        "(configs/penguins.yaml, line 10)",
    ),
    (
        _penguins("year: integer_categorical", "year: {integer_categorical: {max_token: 3}}"),
        "`dataset.csv.columns.year.integer_categorical.max_token`: `integer_categorical` has no "
        "argument `max_token` (did you mean `max_tokens`?) (configs/penguins.yaml, line 11)",
    ),
    (
        _penguins("year: integer_categorical", "year: float_discretized"),
        "`dataset.csv.columns.year`: `float_discretized` needs the argument `num_bins` "
        "(configs/penguins.yaml, line 11)",
    ),
    (
        _penguins("island: string_categorical", "species: string_categorical"),
        "`dataset.csv.columns.species`: `species` is the label column; leave it out of "
        "`columns` (configs/penguins.yaml, line 9)",
    ),
    (
        _penguins("features: [island, sex]", "features: [island, body_mass_g]"),
        "`dataset.csv.crosses[0].features[1]`: `body_mass_g` is float_normalized; a cross "
        "combines categorical or hashed columns (configs/penguins.yaml, line 16)",
    ),
    (
        _penguins("model:  ", "model:  ").replace(
            "  csv:\n    train", "  name: mnist\n  columns: {a: float}\n  csv:\n    train", 1
        ),
        "`dataset`: `columns` types the columns of a CSV table (`dataset.csv.columns`); the "
        "`name` source has no columns (configs/penguins.yaml, line 3)",
    ),
]


@pytest.mark.parametrize(("text", "message"), SPEC_MISTAKES)
def test_spec_mistakes_are_one_line_before_tensorflow(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        spec_from_text(text, WHERE)
    assert str(raised.value) == message
    assert ConfigError.exit_code == 3


def test_a_model_without_input_needs_typed_columns() -> None:
    text = (REPO / "configs" / "xor.yaml").read_text()
    text = re.sub(r"\n  input: \[2\]", "", text)
    with pytest.raises(ConfigError) as raised:
        spec_from_text(text, "configs/xor.yaml")
    assert str(raised.value).startswith(
        "`model`: give either `input: [shape]` (a layer stack) or `inputs:` (a graph of named "
        "layers), not both and not neither"
    )


def test_an_unknown_column_suggests_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.csv", "y,island,a\nq,x,1\n")
    with pytest.raises(DataError) as raised:
        load_csv(
            CsvSource(train="t.csv", label="y", columns={"iland": "string_categorical"}), tmp_path
        )
    assert str(raised.value) == (
        f"{path}: no column `iland` (did you mean `island`?); the columns are `y`, `island`, `a` "
        "(see dataset.csv.columns)"
    )
    assert DataError.exit_code == 4
