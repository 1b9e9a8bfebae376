"""`dlcli predict`: inputs of every kind, every output mode, and every kind of bad input.

The tiny models come from conftest.py (`tiny_models`, trained once per session): `bars` reads
8x8 grayscale images of a light bar at the top, middle or bottom; `answer` says yes or no to CSV
rows of features a and b; `line` is a regression on rows of three numbers. `digits` is
configs/mnist.yaml trained for one epoch on synthetic stand-ins for MNIST: its predictions
mean nothing, but it takes inputs exactly as the real MNIST model does.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.data import decode
from dlcli.data.common import ImageInfo
from dlcli.errors import InputError
from dlcli.inference import predict as predict_module

from .helpers import (
    BAD_MODELS,
    BAR_ROWS,
    REPO,
    TINY_SPECS,
    QuietView,
    TinyModels,
    invoke,
    make_bad_models,
    synthetic_dataset,
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/mnist.yaml trained for one epoch on synthetic MNIST-shaped data."""
    from dlcli.data import keras_datasets
    from dlcli.spec.load import load_spec
    from dlcli.train.pipeline import train

    folder = tmp_path_factory.mktemp("digits")
    patch = pytest.MonkeyPatch()
    patch.setattr(keras_datasets, "fetch", lambda spec: synthetic_dataset(spec.name))
    overrides = ["fit.epochs=1", "compile.jit_compile=false", f"output.dir={folder}"]
    try:
        spec = load_spec(REPO / "configs" / "mnist.yaml", overrides)
        return train(spec, REPO / "configs", QuietView()).model_path
    finally:
        patch.undo()


def run(*args: object) -> object:
    return invoke(["predict", *(str(arg) for arg in args)])


def bar(name: str, *, size: int = 40, dark_on_light: bool = True) -> Image.Image:
    """A `size`-pixel square image of the bar of class `name`, dark on light by default."""
    pixels = np.full((8, 8), 20, dtype=np.uint8)
    pixels[BAR_ROWS[name] : BAR_ROWS[name] + 2, 1:7] = 235
    if dark_on_light:
        pixels = 255 - pixels
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST)


def table_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


# ---------------------------------------------------------------------------------------------
# Output modes


def test_table_shows_class_names_and_probabilities(tiny_models: TinyModels, isolated: Path) -> None:
    bar("top").save("top.png")
    bar("bottom", dark_on_light=False).save("bottom.png")
    result = run("top.png", "bottom.png", "--model", tiny_models.bars)
    assert result.exit_code == 0, result.output
    lines = table_lines(result.stdout)
    assert lines[1].split() == [
        "┃",
        "input",
        "┃",
        "top",
        "1",
        "┃",
        "top",
        "2",
        "┃",
        "top",
        "3",
        "┃",
    ]
    assert lines[3].startswith("│ top.png    │ top ") and lines[4].startswith(
        "│ bottom.png │ bottom "
    )
    assert result.stderr == runtime_note(tiny_models.bars)


def runtime_note(model: Path) -> str:
    """What predict says when it runs a model through the model.onnx that training wrote."""
    return f"Runtime: onnxruntime, {model.parent / 'model.onnx'} (verified against model.keras)\n"


def test_json_is_one_document_with_top_k(tiny_models: TinyModels, isolated: Path) -> None:
    bar("middle").save("middle.png")
    result = run("middle.png", "--model", tiny_models.bars, "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["model"] == str(tiny_models.bars) and document["task"] == "multiclass"
    assert document["errors"] == []
    (prediction,) = document["predictions"]
    assert prediction["input"] == "middle.png" and prediction["row"] is None
    labels = [item["label"] for item in prediction["top_k"]]
    probabilities = [item["probability"] for item in prediction["top_k"]]
    assert labels[0] == "middle" and len(labels) == 2
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[0] > 0.5


def test_csv_rows_and_top_k_clamped_to_the_classes(tiny_models: TinyModels, isolated: Path) -> None:
    bar("top").save("top.png")
    result = run("top.png", "--model", tiny_models.bars, "--csv", "--top-k", "9")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header == "input,row,label_1,probability_1,label_2,probability_2,label_3,probability_3"
    cells = row.split(",")
    assert cells[:3] == ["top.png", "", "top"] and sorted(cells[2::2]) == [
        "bottom",
        "middle",
        "top",
    ]
    assert sum(float(p) for p in cells[3::2]) == pytest.approx(1, abs=1e-5)


def test_json_and_csv_exclude_each_other(tiny_models: TinyModels) -> None:
    result = run("x.png", "--model", tiny_models.bars, "--json", "--csv")
    assert result.exit_code == 2
    assert "give --json or --csv, not both" in result.stderr


def test_newest_run_is_used_and_named(tiny_models: TinyModels, isolated: Path) -> None:
    for name, written in (("old-1", 1.0e9), ("new-1", 1.2e9), ("middle-1", 1.1e9)):
        (isolated / "runs" / name).mkdir(parents=True)
        shutil.copy(tiny_models.bars, isolated / "runs" / name / "model.keras")
        os.utime(isolated / "runs" / name / "model.keras", (written, written))
    bar("top").save("top.png")
    result = run("top.png", "--top-k", "1")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "Model: runs/new-1/model.keras (the newest in runs/ that takes 8x8 grayscale images)\n"
    )  # no model.onnx was copied beside it: Keras runs it
    shutil.rmtree(isolated / "runs")
    none = run("top.png")
    assert none.exit_code == 6
    assert none.stderr == (
        "Error: no --model given and no runs/*/model.keras found; train one with "
        "`dlcli train SPEC` or pass --model PATH\n"
    )


# ---------------------------------------------------------------------------------------------
# Images


def sixteen_bit(image: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)


def with_exif_orientation(image: Image.Image, path: Path) -> None:
    """Store the image turned on its side, with EXIF orientation 6 saying how to turn it back."""
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed after turning 90 degrees clockwise
    image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)


VARIANTS = {
    "l.png": lambda image, path: image.convert("L").save(path),
    "rgb.png": lambda image, path: image.convert("RGB").save(path),
    "rgba.png": lambda image, path: image.convert("RGBA").save(path),
    "palette.png": lambda image, path: image.convert("RGB").convert("P").save(path),
    "sixteen.png": lambda image, path: sixteen_bit(image).save(path),
    "photo.jpg": lambda image, path: image.convert("RGB").save(path, quality=95),
    "bitmap.bmp": lambda image, path: image.save(path),
    "first-frame.gif": lambda image, path: image.save(
        path, save_all=True, append_images=[bar("bottom", size=48)]
    ),
    "lossless.webp": lambda image, path: image.convert("RGB").save(path, lossless=True),
    "turned.png": with_exif_orientation,
}


def test_every_mode_format_and_orientation_reads_the_same(
    tiny_models: TinyModels, isolated: Path
) -> None:
    for name, save in VARIANTS.items():
        save(bar("top", size=48), isolated / name)
    result = run(*VARIANTS, "--model", tiny_models.bars, "--json", "--top-k", "1")
    assert result.exit_code == 0, result.output
    found = {p["input"]: p["top_k"][0]["label"] for p in json.loads(result.stdout)["predictions"]}
    assert found == dict.fromkeys(VARIANTS, "top")


def test_exif_orientation_gives_the_upright_pixels(tiny_models: TinyModels, isolated: Path) -> None:
    bar("top", size=48).save("upright.png")
    with_exif_orientation(bar("top", size=48), isolated / "turned.png")
    result = predict_module.predict(["upright.png", "turned.png"], model_path=tiny_models.bars)
    upright, turned = result.predictions
    assert turned.probabilities == upright.probabilities


def test_images_become_what_the_model_was_trained_on(digits: Path, isolated: Path) -> None:
    """predict gives the model exactly decode.to_array's pixels, without the channel axis."""
    import keras

    shutil.copy(REPO / "examples" / "digits" / "7.png", "seven.png")
    info = ImageInfo(28, 28, 1, "light_on_dark", "mnist-stroke")  # as training on MNIST records
    model = keras.saving.load_model(digits)
    for raw in (False, True):
        pixels = decode.to_array(decode.open_image(Path("seven.png")), info, raw=raw)
        assert pixels.shape == (28, 28, 1) and pixels.dtype == np.uint8
        expected = model.predict(pixels[None, ..., 0], verbose=0)[0]
        for runtime, tolerance in (("keras", {"rel": 1e-5}), ("onnx", {"abs": 1e-6})):
            result = run(
                "seven.png",
                "--model",
                digits,
                "--top-k",
                "10",
                "--json",
                "--runtime",
                runtime,
                *["--raw"] * raw,
            )
            (prediction,) = json.loads(result.stdout)["predictions"]
            by_label = {item["label"]: item["probability"] for item in prediction["top_k"]}
            found = [by_label[str(digit)] for digit in range(10)]
            assert found == pytest.approx(expected, **tolerance), runtime
    framed = decode.to_array(decode.open_image(Path("seven.png")), info)
    assert abs(framed[..., 0].astype(int) - 255).mean() > 100  # light ink on black, as MNIST


def test_folders_globs_and_batches(
    tiny_models: TinyModels, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated / "scans" / "more").mkdir(parents=True)
    names = ["top", "middle", "bottom"] * 3
    for index, name in enumerate(names):
        folder = isolated / "scans" / ("more" if index % 2 else "")
        bar(name, size=30 + index).save(folder / f"{index}-{name}.png")
    (isolated / "scans" / "notes.txt").write_text("not an image, and not picked from a folder\n")
    whole = predict_module.predict(["scans"], model_path=tiny_models.bars, top_k=1)
    assert [p.input for p in whole.predictions] == [
        str(path) for path in sorted(Path("scans").rglob("*.png"))
    ]
    assert all(p.input.endswith(f"-{p.labels[0]}.png") for p in whole.predictions)
    monkeypatch.setattr(predict_module, "PREDICT_BATCH_SIZE", 4)
    pattern = predict_module.predict(
        ["scans/**/*.png", "scans/0-top.png"], model_path=tiny_models.bars, top_k=1
    )
    assert sorted(p.input for p in pattern.predictions) == sorted(
        p.input for p in whole.predictions
    )
    by_input = {p.input: p.probabilities for p in whole.predictions}
    for prediction in pattern.predictions:
        assert prediction.probabilities == pytest.approx(by_input[prediction.input], rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad images


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def make_bad_images(folder: Path) -> None:
    (folder / "notes.png").write_text("a shopping list, not a picture\n")
    bar("top", size=64).convert("RGB").save(folder / "whole.png")
    data = (folder / "whole.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    bar("top").save(folder / "scan.tiff")
    (folder / "bomb.png").write_bytes(png_claiming(10_000, 10_000))
    (folder / "empty").mkdir()


BAD_IMAGES = {
    "notes.png": "notes.png: not an image (cannot identify image file)",
    "cut.png": "cut.png: truncated or corrupt image data",
    "scan.tiff": "scan.tiff: TIFF images are not supported; use PNG, JPEG, BMP, GIF or WebP",
    "bomb.png": "bomb.png: the image is over the 40,000,000-pixel limit (decompression bomb?)",
    "nope.png": "nope.png: no such file",
    "*.gif": "*.gif: no files match this pattern",
    "empty": "empty: no .png, .jpg, .jpeg, .bmp, .gif, .webp files in this folder",
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_a_bad_image_alone_is_one_error_line(
    tiny_models: TinyModels, isolated: Path, name: str
) -> None:
    make_bad_images(isolated)
    result = run(name, "--model", tiny_models.bars)
    assert result.exit_code == 7, result.output
    assert result.stderr == f"Error: {BAD_IMAGES[name]}\n"
    assert result.stdout == ""


def test_in_a_batch_bad_files_are_reported_and_the_rest_predicted(
    tiny_models: TinyModels, isolated: Path
) -> None:
    make_bad_images(isolated)
    bar("middle").save("good.png")
    result = run(
        "good.png",
        "notes.png",
        "whole.png",
        "bomb.png",
        "--model",
        tiny_models.bars,
        "--csv",
        "--top-k",
        "1",
    )
    assert result.exit_code == 7
    assert [line.split(",")[:3] for line in result.stdout.splitlines()] == [
        ["input", "row", "label_1"],
        ["good.png", "", "middle"],
        ["whole.png", "", "top"],
    ]
    assert result.stderr == runtime_note(tiny_models.bars) + (
        f"Skipped {BAD_IMAGES['notes.png']}\n"
        f"Skipped {BAD_IMAGES['bomb.png']}\n"
        "Error: 2 of 4 inputs could not be predicted (listed above)\n"
    )
    as_json = run("good.png", "nope.png", "--model", tiny_models.bars, "--json")
    assert as_json.exit_code == 7
    assert json.loads(as_json.stdout)["errors"] == [BAD_IMAGES["nope.png"]]


# ---------------------------------------------------------------------------------------------
# Tables


def test_csv_and_npy_rows_for_a_table_model(tiny_models: TinyModels, isolated: Path) -> None:
    (isolated / "named.csv").write_text("b,answer,a\n2.0,?,1.5\n-1,?,-3\n")  # columns by name
    (isolated / "plain.csv").write_text("1.5,2.0\n-3,-1\n")  # no header: a, b in order
    np.save("one.npy", np.array([2.0, 2.0], dtype="float32"))
    np.save("many.npy", np.array([[-2.0, -2.0], [3.0, 0.5]]))
    result = run(
        "named.csv",
        "plain.csv",
        "one.npy",
        "many.npy",
        "--model",
        tiny_models.answer,
        "--json",
        "--top-k",
        "1",
    )
    assert result.exit_code == 0, result.output
    found = [
        (p["input"], p["row"], p["top_k"][0]["label"])
        for p in json.loads(result.stdout)["predictions"]
    ]
    assert found == [
        ("named.csv", 0, "yes"),
        ("named.csv", 1, "no"),
        ("plain.csv", 0, "yes"),
        ("plain.csv", 1, "no"),
        ("one.npy", 0, "yes"),
        ("many.npy", 0, "no"),
        ("many.npy", 1, "yes"),
    ]
    table = table_lines(run("many.npy", "--model", tiny_models.answer).stdout)
    assert table[1].split()[:4] == ["┃", "input", "┃", "top"]
    assert table[3].startswith("│ many.npy[0] │ no ")


def test_a_semicolon_file_trains_and_a_tab_file_predicts_as_commas_do(
    tiny_models: TinyModels, isolated: Path
) -> None:
    """The `answer` model trained again on its data with semicolons, then given tab-separated
    rows: the same model and the same predictions (each file is read by its delimiter)."""
    from dlcli.spec.load import spec_from_text
    from dlcli.train.pipeline import train

    (isolated / "answers").mkdir()
    for split in ("train", "test"):
        text = (tiny_models.folder / "answers" / f"{split}.csv").read_text()
        (isolated / "answers" / f"{split}.csv").write_text(text.replace(",", ";"))
    model = train(spec_from_text(TINY_SPECS["answer"], "answer.yaml"), isolated, QuietView())
    rows = [["b", "answer", "a"], ["2.0", "?", "1.5"], ["-1", "?", "-3"], ["0.3", "?", "-0.2"]]
    Path("commas.csv").write_text("".join(",".join(row) + "\n" for row in rows))
    Path("tabs.csv").write_text("".join("\t".join(row) + "\n" for row in rows))
    found = []
    for name, path in (("commas.csv", tiny_models.answer), ("tabs.csv", model.model_path)):
        result = run(name, "--model", path, "--json", "--top-k", "1")
        assert result.exit_code == 0, result.output
        top = [p["top_k"][0] for p in json.loads(result.stdout)["predictions"]]
        found.append(([item["label"] for item in top], [item["probability"] for item in top]))
    assert found[1][0] == found[0][0] == ["yes", "no", "yes"]  # yes where a + b > 0
    assert found[1][1] == pytest.approx(found[0][1])


def test_regression_prints_values(tiny_models: TinyModels, isolated: Path) -> None:
    rows = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], dtype="float32")
    np.save("rows.npy", rows)
    result = run("rows.npy", "--model", tiny_models.line, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["task"] == "regression"
    values = [p["value"][0] for p in document["predictions"]]
    assert values == pytest.approx([3.0, 8.25], abs=0.4)  # y = x . (1, -2, 0.5) + 3
    csv_lines = run("rows.npy", "--model", tiny_models.line, "--csv").stdout.splitlines()
    assert csv_lines[0] == "input,row,value" and csv_lines[1].startswith("rows.npy,0,")
    table = table_lines(run("rows.npy", "--model", tiny_models.line).stdout)
    assert table[1].split() == ["┃", "input", "┃", "value", "┃"]


BAD_ROWS = {
    "wide.csv": ("1,2,3\n", "wide.csv: rows have 3 values but the model takes 2 features"),
    "word.csv": ("a,b\n1,2\nx,3\n", "word.csv, line 3: expected 2 numbers, found ['x', '3']"),
    "cols.csv": ("a,c\n1,2\n", "cols.csv: has no column b (the model takes a, b)"),
    "blank.csv": ("\n\n", "blank.csv: the file holds no rows"),
    "nan.csv": ("1,nan\n", "nan.csv: holds NaN or Inf values"),
    "wide.npy": (
        np.zeros((3, 5)),
        "wide.npy: holds an array of shape (3, 5), but the model takes (2,) or a stack of them",
    ),
    "objects.npy": (
        np.array([{"a": 1}], dtype=object),
        "objects.npy: holds Python objects (pickle), which are refused",
    ),
    "picture.png": (
        None,
        "picture.png: the model takes rows of 2 features (.csv or .npy files), not images",
    ),
    "notes.txt": (
        "meet at noon\n",
        "notes.txt: the model takes rows of 2 features (.csv or .npy files), not .txt files",
    ),
}


def test_an_empty_cell_is_filled_with_the_training_mean_as_in_training(
    tiny_models: TinyModels, isolated: Path
) -> None:
    """A model trained on a CSV of plain numbers fills an empty cell with the mean of that
    column's training rows, recorded in dlcli.json: the prediction is that of the row with the
    mean written in, whether the file has a header or not."""
    from dlcli.model import artifact

    fill = artifact.inspect(tiny_models.answer).info.columns.fill
    Path("empty.csv").write_text("a,b\n0.4,\n,-0.3\n")
    Path("headless.csv").write_text("0.4,\n,-0.3\n")
    Path("written.csv").write_text(f"a,b\n0.4,{fill['b']!r}\n{fill['a']!r},-0.3\n")
    answers = {}
    for name in ("empty.csv", "headless.csv", "written.csv"):
        result = run(name, "--model", tiny_models.answer, "--json", "--top-k", "1")
        assert result.exit_code == 0, result.output
        answers[name] = [p["top_k"] for p in json.loads(result.stdout)["predictions"]]
    assert answers["empty.csv"] == answers["headless.csv"] == answers["written.csv"]


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_bad_rows_are_explained(tiny_models: TinyModels, isolated: Path, name: str) -> None:
    content, message = BAD_ROWS[name]
    if isinstance(content, str):
        (isolated / name).write_text(content)
    elif content is None:
        bar("top").save(name)
    else:
        np.save(isolated / name, content, allow_pickle=True)
    result = run(name, "--model", tiny_models.answer)
    assert result.exit_code == 7, result.output
    assert result.stderr == f"Error: {message}\n"


# ---------------------------------------------------------------------------------------------
# Model files


@pytest.mark.parametrize("name", sorted(set(BAD_MODELS) - {"plain.keras"}))
def test_bad_model_files_exit_6(tiny_models: TinyModels, isolated: Path, name: str) -> None:
    make_bad_models(isolated, tiny_models.bars)
    bar("top").save("top.png")
    result = run("top.png", "--model", name)
    assert result.exit_code == 6, result.output
    assert result.stderr == BAD_MODELS[name] + "\n"


def test_a_plain_keras_model_is_used_and_the_assumption_said(
    tiny_models: TinyModels, isolated: Path
) -> None:
    make_bad_models(isolated, tiny_models.bars)
    bar("top", dark_on_light=False).save("top.png")
    result = run("top.png", "--model", "plain.keras", "--top-k", "1", "--csv")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "plain.keras has no dlcli.json: assumed it takes 8x8 grayscale images with values 0..255, "
        "not inverted or re-framed, and its 3 outputs are the scores of classes 0..2\n"
    )
    assert result.stdout.splitlines()[1].startswith("top.png,,2,")  # `top` is class 2 of 3


def test_a_plain_model_with_an_unclear_input_is_refused(isolated: Path) -> None:
    import keras

    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled)).save("any-size.keras")
    result = run("x.png", "--model", "any-size.keras")
    assert result.exit_code == 6
    assert result.stderr == (
        "Error: any-size.keras: has no dlcli.json and its input shape (None, None, 3) does not "
        "say what it takes; train the model with dlcli, or give it images (height, "
        "width[, channels]) or rows of features\n"
    )


def test_raise_for_problems_counts_inputs() -> None:
    result = predict_module.PredictResult(
        Path("m.keras"),
        "multiclass",
        [predict_module.Prediction("a.csv", 0), predict_module.Prediction("a.csv", 1)],
        ["b.png: no such file"],
    )
    with pytest.raises(
        InputError, match=r"^1 of 2 inputs could not be predicted \(listed above\)$"
    ):
        result.raise_for_problems()
