"""`dlcli evaluate` from nothing but the model file, on the session's tiny models.

The three models (`tiny_models` in conftest.py, also used by the predict tests): `bars` (8x8
grayscale images in class folders: a light bar at the top, middle or bottom), `answer` (a
binary classifier of CSV rows) and `line` (a linear regression from an .npz file).
"""

from __future__ import annotations

import json
import shutil
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.model import scoring

from .helpers import (
    BAD_MODELS,
    BAR_CLASSES,
    TINY_SPECS,
    QuietView,
    TinyModels,
    invoke,
    make_bad_models,
    write_bars,
)


def run(*args: object) -> object:
    return invoke([str(arg) for arg in args])


def keras_evaluate(model_path: Path, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import keras

    model = keras.saving.load_model(model_path)
    return model.evaluate(x, y, batch_size=1024, verbose=0, return_dict=True)


def bars_test_split() -> tuple[np.ndarray, np.ndarray]:
    """The bars test images as training read them (sorted class folders, sorted files)."""
    from dlcli.data.image_folders import load_images
    from dlcli.spec.schema import ImagesSource

    source = ImagesSource(train="train", test="test", image_size=[8, 8], color_mode="grayscale")
    _, _, test, _ = load_images(source, Path.cwd())
    return test.x, test.y


# ---------------------------------------------------------------------------------------------
# Classification


def test_multiclass_report_agrees_with_keras(tiny_models: TinyModels, isolated: Path) -> None:
    result = run("evaluate", tiny_models.bars, "--json", "--output", isolated / "out")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    shutil.copytree(tiny_models.folder / "bars", isolated, dirs_exist_ok=True)
    x, y = bars_test_split()
    expected = keras_evaluate(tiny_models.bars, x, y)
    assert report["metrics"] == pytest.approx(expected, rel=1e-6)
    assert report["examples"] == 13 and report["split"] == "test" and report["task"] == "multiclass"
    assert report["data"] == "bars/test"  # the folder of the test split, not of training
    matrix = np.array(report["confusion_matrix"]["rows_true_columns_predicted"])
    assert report["confusion_matrix"]["labels"] == list(BAR_CLASSES)
    assert matrix.tolist() == [[4, 0, 0], [0, 4, 0], [0, 1, 4]]  # the odd `top` image is middle
    assert np.trace(matrix) / matrix.sum() == pytest.approx(expected["accuracy"])
    assert report["most_confused"] == [{"true": "top", "predicted": "middle", "count": 1}]
    assert report["classes"]["middle"] == {
        "precision": 0.8,
        "recall": 1.0,
        "f1": pytest.approx(8 / 9),
        "support": 4,
    }
    assert report["classes"]["top"] == {
        "precision": 1.0,
        "recall": 0.8,
        "f1": pytest.approx(8 / 9),
        "support": 5,
    }
    assert report["averages"]["macro avg"]["recall"] == pytest.approx((1 + 1 + 0.8) / 3)
    assert report["averages"]["weighted avg"]["recall"] == pytest.approx((4 + 4 + 4) / 13)
    assert "roc_auc" not in report and "regression" not in report
    written = {name: Path(path).name for name, path in report["files"].items()}
    assert written == {
        "confusion_matrix": "confusion_matrix.png",
        "misclassified": "misclassified.png",
        "evaluation": "evaluation.json",
    }
    assert json.loads((isolated / "out" / "evaluation.json").read_text()) == report
    with Image.open(isolated / "out" / "misclassified.png") as grid:
        assert grid.format == "PNG" and grid.width > 100


@pytest.mark.parametrize(
    ("batch_bytes", "least_batch"),
    [(2**28, 1), (1, 5), (1, 1)],
    ids=["one-batch", "three-eager-batches", "thirteen-traced-batches"],
)
def test_score_is_kerass_evaluate_and_predict_in_one_batch_or_many(
    tiny_models: TinyModels,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch_bytes: int,
    least_batch: int,
) -> None:
    """One batch, or three (5, 5 and 3 examples), go through predict_on_batch eagerly;
    thirteen batches of one example through predict, traced: the numbers are Keras's
    `evaluate` and `predict` either way."""
    import keras

    shutil.copytree(tiny_models.folder / "bars", isolated, dirs_exist_ok=True)
    x, y = bars_test_split()
    monkeypatch.setattr(scoring, "BATCH_BYTES", batch_bytes)  # 1: `least_batch` decides
    model = keras.saving.load_model(tiny_models.bars)
    scores, outputs = scoring.score(model, x, y, least_batch)
    assert scores == pytest.approx(keras_evaluate(tiny_models.bars, x, y), rel=1e-6)
    assert outputs is not None and outputs.shape == (13, 3)
    expected = keras.saving.load_model(tiny_models.bars).predict(x, verbose=0)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    assert scoring.score(model, x, y, 1, outputs=False)[1] is None


def test_terminal_report(tiny_models: TinyModels) -> None:
    result = run("evaluate", tiny_models.bars, "--output", "out")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Evaluated {tiny_models.bars} on bars/test, test split (13 examples)"
    assert lines[1].startswith("accuracy 0.9231  loss ")
    text = "\n".join(line.rstrip() for line in lines)
    assert "│ bottom       │    1.0000 │ 1.0000 │ 1.0000 │       4 │" in text
    assert "│ middle       │    0.8000 │ 1.0000 │ 0.8889 │       4 │" in text
    assert "│ weighted avg │    0.9385 │ 0.9231 │ 0.9231 │      13 │" in text
    assert "Confusion matrix (rows: true class, columns: predicted class)" in text
    assert "┃        ┃ bottom ┃ middle ┃ top ┃" in text
    assert "│ top    │      0 │      1 │   4 │" in text
    assert "Most confused (true as predicted): top as middle (1)" in text
    assert lines[-3:] == [
        "Confusion matrix: out/confusion_matrix.png",
        "Misclassified: out/misclassified.png",
        "Evaluation: out/evaluation.json",
    ]
    assert result.stderr == ""


def test_files_go_beside_the_model_and_other_splits_get_their_own(
    tiny_models: TinyModels, isolated: Path
) -> None:
    copy = isolated / "runs" / "bars-1"
    copy.mkdir(parents=True)
    shutil.copy(tiny_models.bars, copy / "model.keras")
    shutil.copytree(
        tiny_models.folder / "bars", isolated / "bars"
    )  # the data, relative to the spec
    test = run("evaluate", copy / "model.keras", "--json")
    validation = run("evaluate", copy / "model.keras", "--split", "validation", "--json")
    train = run("evaluate", copy / "model.keras", "--split", "train", "--json")
    assert [r.exit_code for r in (test, validation, train)] == [0, 0, 0], validation.output
    sizes = [json.loads(r.stdout)["examples"] for r in (test, validation, train)]
    assert sizes == [13, 9, 27]  # 36 training images, a quarter held out for validation
    assert {p.name for p in copy.iterdir()} == {
        "model.keras",
        "evaluation.json",
        "confusion_matrix.png",
        "misclassified.png",
        "evaluation-validation.json",
        "confusion_matrix-validation.png",
        "evaluation-train.json",
        "confusion_matrix-train.png",
    }


def test_binary_reports_roc_auc_and_threshold(tiny_models: TinyModels) -> None:
    result = run("evaluate", tiny_models.answer, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "binary" and report["threshold"] == 0.5
    assert report["confusion_matrix"]["labels"] == ["no", "yes"]
    assert sorted(report["classes"]) == ["no", "yes"]
    import keras

    from dlcli.data.csv_tables import load_csv
    from dlcli.spec.schema import CsvSource

    _, _, test, _ = load_csv(
        CsvSource(train="train.csv", test="test.csv", label="answer"),
        tiny_models.folder / "answers",
    )
    model = keras.saving.load_model(tiny_models.answer)
    assert report["metrics"] == pytest.approx(
        model.evaluate(test.x, test.y, verbose=0, return_dict=True), rel=1e-6
    )
    scores = model.predict(test.x, verbose=0).reshape(-1)
    positive, negative = scores[test.y == 1], scores[test.y == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in product(positive, negative)]
    assert report["roc_auc"] == pytest.approx(np.mean(pairs))
    text = run("evaluate", tiny_models.answer).stdout
    assert f"ROC AUC {report['roc_auc']:.4f} (threshold 0.5)" in text


def test_regression_reports_errors(tiny_models: TinyModels) -> None:
    result = run("evaluate", tiny_models.line, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "regression" and report["examples"] == 16
    import keras

    with np.load(tiny_models.folder / "line" / "line.npz") as file:
        x, y = file["x_test"], file["y_test"]
    model = keras.saving.load_model(tiny_models.line)
    errors = model.predict(x, verbose=0).reshape(-1) - y
    mse = float(np.mean(errors**2))
    assert report["regression"] == pytest.approx(
        {
            "mae": float(np.mean(np.abs(errors))),
            "mse": mse,
            "rmse": mse**0.5,
            "r2": 1 - np.sum(errors**2) / np.sum((y - y.mean()) ** 2),
        },
        rel=1e-5,
    )
    assert report["metrics"]["loss"] == pytest.approx(mse, rel=1e-5)
    assert report["metrics"]["mae"] == pytest.approx(report["regression"]["mae"], rel=1e-5)
    assert "confusion_matrix" not in report and "files" in report
    text = run("evaluate", tiny_models.line).stdout
    r = report["regression"]
    assert f"MAE {r['mae']:.4f}  MSE {r['mse']:.4f}  RMSE {r['rmse']:.4f}  R² {r['r2']:.4f}" in text


def test_data_option_evaluates_a_file_checked_against_the_model(
    tiny_models: TinyModels, isolated: Path
) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(10, 3)).astype("float32")
    np.savez(isolated / "more.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5], dtype="float32") + 3)
    result = run("evaluate", tiny_models.line, "--data", "more.npz", "--json", "--output", "out")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"] == "more.npz" and report["split"] == "all" and report["examples"] == 10
    assert (isolated / "out" / "evaluation-more.json").is_file()
    np.savez(isolated / "wide.npz", x=np.zeros((4, 5), "float32"), y=np.zeros(4, "float32"))
    wide = run("evaluate", tiny_models.line, "--data", "wide.npz")
    assert wide.exit_code == 4
    assert wide.stderr == "Error: wide.npz: examples have shape (5,) but the model takes (3,)\n"
    np.savez(isolated / "odd.npz", inputs=np.zeros((4, 3)))
    odd = run("evaluate", tiny_models.line, "--data", "odd.npz")
    assert odd.exit_code == 4
    assert (
        odd.stderr
        == "Error: odd.npz: has no `x_test`/`y_test` or `x`/`y` arrays; it holds inputs\n"
    )
    missing = run("evaluate", tiny_models.line, "--data", "nope.npz")
    assert (missing.exit_code, missing.stderr) == (4, "Error: data file not found: nope.npz\n")
    text = run("evaluate", tiny_models.line, "--data", "more.npz", "--output", "out")
    assert text.stdout.startswith(f"Evaluated {tiny_models.line} on more.npz (10 examples)\n")


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolons", "tabs"])
def test_data_option_reads_semicolon_and_tab_files(
    tiny_models: TinyModels, isolated: Path, delimiter: str
) -> None:
    """`--data` reads semicolon and tab separated files by their delimiter."""
    text = (tiny_models.folder / "answers" / "test.csv").read_text()
    Path("more.csv").write_text(text.replace(",", delimiter))
    result = run("evaluate", tiny_models.answer, "--data", "more.csv", "--json", "--output", "out")
    assert result.exit_code == 0, result.output
    commas = run("evaluate", tiny_models.answer, "--json", "--output", "out")
    expected = json.loads(commas.stdout)
    report = json.loads(result.stdout)
    assert (report["data"], report["examples"]) == ("more.csv", 24)
    assert report["metrics"] == pytest.approx(expected["metrics"])
    assert report["confusion_matrix"] == expected["confusion_matrix"]


def test_missing_data_and_splits_are_explained(tiny_models: TinyModels, isolated: Path) -> None:
    moved = isolated / "elsewhere" / "run" / "model.keras"
    moved.parent.mkdir(parents=True)
    shutil.copy(tiny_models.bars, moved)
    result = run("evaluate", moved)
    assert result.exit_code == 4
    assert result.stderr == (
        "Error: the model was trained on bars/train, which was not found relative to "
        f"{isolated}; run evaluate from the folder of the spec, or pass the data "
        "with --data PATH\n"
    )
    (moved.parent / "run.json").write_text(json.dumps({"spec_dir": str(tiny_models.folder)}))
    recorded = run("evaluate", moved, "--json")  # run.json names the spec's folder
    assert recorded.exit_code == 0, recorded.output
    assert json.loads(recorded.stdout)["examples"] == 13
    no_validation = run("evaluate", tiny_models.answer, "--split", "validation")
    assert no_validation.exit_code == 4
    assert no_validation.stderr == (
        "Error: answers/train.csv has no validation split (the spec sets no "
        "`dataset.validation_split`); use --split test or --split train\n"
    )
    bad_split = run("evaluate", tiny_models.answer, "--split", "dev")
    assert bad_split.exit_code == 2  # a usage error, answered by Typer before anything is read
    assert bad_split.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--split': Value error, 'dev' is not one of 'test', "
        "'validation', 'train'."
    )


def test_changed_data_is_flagged(tiny_models: TinyModels, isolated: Path) -> None:
    project = isolated / "project"
    shutil.copytree(tiny_models.folder / "answers", project / "answers")
    (project / "runs" / "answer-1").mkdir(parents=True)
    shutil.copy(tiny_models.answer, project / "runs" / "answer-1" / "model.keras")
    with open(project / "answers" / "test.csv", "a") as file:
        file.write("1.0,1.0,yes\n")
    result = run("evaluate", project / "runs" / "answer-1" / "model.keras", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 25
    assert result.stderr == (
        "the data of answers/train.csv is not the data the model was trained on (its digest "
        "differs); the numbers describe the data as it is now\n"
    )


# ---------------------------------------------------------------------------------------------
# Bad model files (the same checks guard predict)


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_bad_model_files_get_one_line_and_exit_code_6(
    tiny_models: TinyModels, isolated: Path, name: str
) -> None:
    make_bad_models(isolated, tiny_models.line)
    result = run("evaluate", name)
    assert result.exit_code == 6, result.output
    assert result.stderr == BAD_MODELS[name] + "\n"
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# The numbers themselves


def test_roc_auc_counts_ties_half_and_needs_both_classes() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.9, 0.2])
    # positives 0.4, 0.8, 0.9 against negatives 0.1, 0.4, 0.2: 8 wins and one tie of 9 pairs
    assert scoring.roc_auc(labels, scores) == pytest.approx(8.5 / 9)
    assert scoring.roc_auc(np.ones(3), np.array([0.1, 0.5, 0.9])) is None


def test_scores_follow_the_confusion_matrix() -> None:
    matrix = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    classes, averages = scoring.scores_from_counts(
        ["a", "b", "c"], np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    )
    assert [(c.precision, c.recall, c.support) for c in classes] == [
        (5 / 7, 5 / 6, 6),
        (3 / 4, 3 / 5, 5),
        (0.0, 0.0, 0),
    ]
    assert classes[0].f1 == pytest.approx(2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6))
    assert averages["macro avg"].precision == pytest.approx((5 / 7 + 3 / 4) / 2)  # c left out
    assert averages["weighted avg"].recall == pytest.approx((5 + 3) / 11)
    assert averages["weighted avg"].support == 11


def test_one_hot_labels_and_most_confused_pairs() -> None:
    one_hot = np.eye(3)[[0, 1, 2, 2]]
    outputs = np.eye(3)[[0, 2, 1, 1]]
    matrix = scoring.confusion_matrix(one_hot, outputs, "multiclass")
    assert matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 2, 0]]
    assert scoring.most_confused(matrix, ["a", "b", "c"], 5) == [("c", "b", 2), ("b", "c", 1)]


def test_regression_errors_r2_is_none_for_constant_targets() -> None:
    errors = scoring.regression_errors(np.array([2.0, 2.0]), np.array([[1.0], [3.0]]))
    assert errors == {"mae": 1.0, "mse": 1.0, "rmse": 1.0, "r2": None}


# ---------------------------------------------------------------------------------------------
# Where each split came from, and files training skipped


def test_each_split_names_its_own_file(tiny_models: TinyModels) -> None:
    """Each split is said to come from its own file (or the share of the training data held out)."""
    expected = {
        (tiny_models.bars, "test"): "bars/test",
        (tiny_models.bars, "validation"): "bars/train, 25% held out for validation",
        (tiny_models.bars, "train"): "bars/train",
        (tiny_models.answer, "test"): "answers/test.csv",
        (tiny_models.line, "test"): "line/line.npz (x_test, y_test)",
    }
    for (model, split), source in expected.items():
        result = run("evaluate", model, "--split", split, "--json", "--output", "out")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["data"] == source
    text = run("evaluate", tiny_models.answer, "--output", "out").stdout
    assert text.startswith(f"Evaluated {tiny_models.answer} on answers/test.csv, test split (24 ")


def test_files_training_skipped_are_skipped_again(isolated: Path) -> None:
    """A model trained with --skip-bad: evaluate skips the unreadable file again."""
    from dlcli.spec.load import spec_from_text
    from dlcli.train.pipeline import train

    write_bars(isolated / "bars")
    (isolated / "bars" / "train" / "top" / "broken.png").write_text("not an image")
    (isolated / "bars" / "test" / "top" / "broken.png").write_text("not an image")
    spec = spec_from_text(TINY_SPECS["bars"].replace("epochs: 6", "epochs: 1"), "bars.yaml")
    model = train(spec, isolated, QuietView(), skip_bad=True).model_path
    result = run("evaluate", model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 13
    assert result.stderr == (
        "Skipped 2 image files that cannot be read (training left out 2, with --skip-bad)\n"
    )
    on_data = run("evaluate", model, "--data", "bars/test", "--json")
    assert on_data.exit_code == 0, on_data.output
    assert on_data.stderr == "Skipped 1 image files that cannot be read\n"


def test_skip_bad_leaves_out_unreadable_files_of_data(
    tiny_models: TinyModels, isolated: Path
) -> None:
    shutil.copytree(tiny_models.folder / "bars" / "test", isolated / "more")
    (isolated / "more" / "top" / "broken.png").write_text("not an image")
    refused = run("evaluate", tiny_models.bars, "--data", "more", "--output", "out")
    assert refused.exit_code == 4
    assert refused.stderr.startswith("Error: 1 of 14 image files cannot be read; the first: ")
    skipped = run("evaluate", tiny_models.bars, "--data", "more", "--output", "out", "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert skipped.stderr == "Skipped 1 image files that cannot be read\n"


def test_a_model_of_one_channel_images_evaluates_arrays_without_the_axis(isolated: Path) -> None:
    """npz images of (8, 8) for a model input of (8, 8, 1): training adds the axis, and so does
    evaluate."""
    from dlcli.spec.load import spec_from_text
    from dlcli.train.pipeline import train

    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, size=(24, 8, 8)).astype("uint8")
    np.savez(
        "digits.npz",
        x_train=x[:16],
        y_train=np.arange(16) % 2,
        x_test=x[16:],
        y_test=np.arange(8) % 2,
    )
    text = (
        TINY_SPECS["bars"]
        .replace(
            "images: {train: bars/train, test: bars/test, image_size: [8, 8], "
            "color_mode: grayscale}",
            "npz: digits.npz",
        )
        .replace("units: 3", "units: 2")
        .replace("epochs: 6", "epochs: 1")
    )
    model = train(spec_from_text(text, "digits.yaml"), isolated, QuietView()).model_path
    result = run("evaluate", model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == 8
