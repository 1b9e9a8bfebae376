"""Tests of dlcli.data.csv_tables (CSV files) and dlcli.data.image_folders (image folders), on tiny
data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlcli.data.common import ImageInfo
from dlcli.data.csv_tables import CHUNK_ROWS, load_csv
from dlcli.data.decode import open_image, to_array
from dlcli.data.image_folders import load_images
from dlcli.errors import DataError
from dlcli.spec.schema import CsvSource, ImagesSource

# ---------------------------------------------------------------------------------------------
# CSV


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def csv_error(folder: Path, **source: object) -> str:
    with pytest.raises(DataError) as raised:
        load_csv(CsvSource(**source), folder)  # type: ignore[arg-type]
    return str(raised.value)


def test_integer_labels_and_every_other_column_as_features(tmp_path: Path) -> None:
    write(tmp_path, "train.csv", "a,label,b\n1,0,2.5\n3,1,4\n\n5,1,6\n")
    train, validation, test, info = load_csv(CsvSource(train="train.csv"), tmp_path)
    assert train.x.dtype == np.float32 and train.x.tolist() == [[1, 2.5], [3, 4], [5, 6]]
    assert train.y.dtype == np.int64 and train.y.tolist() == [0, 1, 1]
    assert validation is None and test is None
    assert (info.source, info.class_names, info.feature_names) == ("train.csv", None, ["a", "b"])


def test_string_labels_become_sorted_class_names_shared_by_all_files(tmp_path: Path) -> None:
    write(tmp_path, "train.csv", "x,kind\n1,dog\n2,cat\n3,emu\n")
    write(tmp_path, "valid.csv", "kind,x\ncat,4\n")
    write(tmp_path, "test.csv", "x,kind\n5,emu\n6,dog\n")
    source = CsvSource(train="train.csv", validation="valid.csv", test="test.csv", label="kind")
    train, validation, test, info = load_csv(source, tmp_path)
    assert info.class_names == ["cat", "dog", "emu"]
    assert train.y.tolist() == [1, 0, 2]
    assert validation is not None and validation.y.tolist() == [0]
    assert validation.x.tolist() == [[4]]
    assert test is not None and test.y.tolist() == [2, 1]


def test_decimal_labels_are_regression_targets(tmp_path: Path) -> None:
    write(tmp_path, "train.csv", "rooms,price\n3,2.5\n4,3\n")
    train, _, _, info = load_csv(CsvSource(train="train.csv", label="price"), tmp_path)
    assert train.y.dtype == np.float32 and train.y.tolist() == [2.5, 3.0]
    assert info.class_names is None


def test_listed_features_in_their_order_and_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_bytes("\ufefflabel,a,b,c\n0,1,2,3\n1,4,5,6\n".encode())
    train, _, _, info = load_csv(CsvSource(train="train.csv", features=["c", "a"]), tmp_path)
    assert train.x.tolist() == [[3, 1], [6, 4]]
    assert info.feature_names == ["c", "a"]


def test_many_rows_in_several_chunks(tmp_path: Path) -> None:
    rows = "".join(f"{index % 3},{index},{index * 2}\n" for index in range(CHUNK_ROWS * 2 + 5))
    write(tmp_path, "train.csv", "label,a,b\n" + rows)
    train, _, _, _ = load_csv(CsvSource(train="train.csv"), tmp_path)
    assert train.x.shape == (CHUNK_ROWS * 2 + 5, 2)
    assert train.x[-1].tolist() == [CHUNK_ROWS * 2 + 4, (CHUNK_ROWS * 2 + 4) * 2]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("label;a;b\n0;1;2,5\n1;3;4\n", 2),  # a decimal comma stays in its cell, refused
        ("label\ta\tb\n0\t1\t2,5\n1\t3\t4\n", 2),
        ('label,a,b\n0,1,"2,5"\n1,3,4\n', 2),
        ('\n\nlabel;a;b\n0;1;"2,5"\n\n1;3;4\n', 4),  # blank lines, before the header too
    ],
    ids=["semicolons", "tabs", "commas", "blank-lines"],
)
def test_the_delimiter_is_sniffed(tmp_path: Path, text: str, line: int) -> None:
    """Semicolon, tab and comma files are read by their delimiter, past a blank first line: a bad
    value is named by its line and column."""
    path = write(tmp_path, "train.csv", text)
    message = csv_error(tmp_path, train="train.csv")
    assert message == f"{path}, line {line}, column `b`: `2,5` is not a number"
    write(tmp_path, "train.csv", text.replace("2,5", "2"))
    train, _, _, info = load_csv(CsvSource(train="train.csv"), tmp_path)
    assert train.x.tolist() == [[1, 2], [3, 4]] and train.y.tolist() == [0, 1]
    assert info.feature_names == ["a", "b"]


def test_a_single_column_and_quoted_delimiters_read_as_commas(tmp_path: Path) -> None:
    write(tmp_path, "train.csv", 'label,a\n0,"1"\n1,"2"\n')
    train, _, _, _ = load_csv(CsvSource(train="train.csv"), tmp_path)
    assert train.x.tolist() == [[1], [2]]
    write(tmp_path, "train.csv", "label\n0\n")  # the sniffer cannot tell: commas
    assert csv_error(tmp_path, train="train.csv") == (
        f"{tmp_path / 'train.csv'}: no feature columns besides the label `label`"
    )


@pytest.mark.parametrize(
    ("text", "source", "problem"),
    [
        (
            "",
            {},
            "{path}: the file is empty; expected a header row naming the columns, then "
            "one row per example",
        ),
        ("label,a\n", {}, "{path}: no data rows after the header"),
        (
            "lable,a,b\n0,1,2\n",
            {},
            "{path}: no label column `label` (did you mean `lable`?); the columns are `lable`, "
            "`a`, `b` (see dataset.csv.label)",
        ),
        (
            "label,a,b\n0,1,2\n",
            {"features": ["a", "bee"]},
            "{path}: no feature column `bee`; the columns are `label`, `a`, `b` "
            "(see dataset.csv.features)",
        ),
        (
            "label,a,b\n0,1,2\n",
            {"features": ["a", "label"]},
            "{path}: `label` is both the label and a feature; leave it out of dataset.csv.features",
        ),
        ("label\n0\n", {}, "{path}: no feature columns besides the label `label`"),
        (
            ",label,a\n0,1,2\n",
            {},
            "{path}: column 1 has no name in the header (a saved DataFrame index? save it with "
            "index=False, or list the feature columns in dataset.csv.features)",
        ),
        (
            "label,a,a\n0,1,2\n",
            {},
            "{path}: 2 columns are named `a`; give each a unique name",
        ),
        (
            "label,a,b\n0,1,2\n1,3\n",
            {},
            "{path}, line 3: 2 columns, but the header has 3",
        ),
        (
            "label,a,b\n0,1,2\n\n1,3,4,5\n",
            {},
            "{path}, line 4: 4 columns, but the header has 3",
        ),
        (
            "label,a,b\n0,1,2\n1,3,four\n",
            {},
            "{path}, line 3, column `b`: `four` is not a number",
        ),
        (
            "label,a,b\n0,1,2\n1,,4\n",
            {"missing": "error"},
            "{path}, line 3, column `a`: the value is empty; fill in or drop missing values "
            "(or `dataset.csv.missing: mean`)",
        ),
        (
            "label,a,b\n0,1,nan\n",
            {},
            "{path}, line 2, column `b`: `nan` is not a finite float32 number",
        ),
        (
            "label,a,b\n0,1,1e39\n",
            {},
            "{path}, line 2, column `b`: `1e39` is not a finite float32 number",
        ),
        (
            "label,a,b\n0,1,2\n,3,4\n",
            {},
            "{path}, line 3: the label `label` is empty",
        ),
        (
            "label,a,b\n0.5,1,2\ninf,3,4\n",
            {},
            "{path}, line 3: the label `inf` is not a finite float32 number",
        ),
        (
            "label,a,b\n0,1,2\n99999999999999999999999,3,4\n",
            {},
            "{path}, line 3: the label `99999999999999999999999` does not fit a class index "
            "(a 64-bit integer); integer labels are class indices 0, 1, 2, ...",
        ),
        (
            'label,a,b\n0,1,"2\n',
            {},
            "{path}, line 2: unexpected end of data",
        ),
    ],
)
def test_csv_errors_name_the_file_line_and_column(
    tmp_path: Path, text: str, source: dict[str, object], problem: str
) -> None:
    path = write(tmp_path, "train.csv", text)
    message = csv_error(tmp_path, train="train.csv", **source)
    assert message == problem.format(path=path)


def test_a_bad_value_after_the_first_chunk_is_found(tmp_path: Path) -> None:
    rows = [f"0,{index}" for index in range(CHUNK_ROWS + 10)]
    rows[CHUNK_ROWS + 3] = "1,oops"
    path = write(tmp_path, "train.csv", "label,a\n" + "\n".join(rows) + "\n")
    message = csv_error(tmp_path, train="train.csv")
    assert message == f"{path}, line {CHUNK_ROWS + 5}, column `a`: `oops` is not a number"


def test_a_missing_file(tmp_path: Path) -> None:
    assert (
        csv_error(tmp_path, train="nope.csv") == f"dataset file not found: {tmp_path / 'nope.csv'}"
    )


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"label,caf\xe9\n0,1\n")
    message = csv_error(tmp_path, train="train.csv")
    assert message == f"{path}: not UTF-8 text (invalid continuation byte); save it as UTF-8"


def test_a_test_label_missing_from_training(tmp_path: Path) -> None:
    train = write(tmp_path, "train.csv", "x,label\n1,cat\n2,dog\n")
    test = write(tmp_path, "test.csv", "x,label\n1,cat\n2,zebra\n")
    message = csv_error(tmp_path, train="train.csv", test="test.csv")
    assert message == (
        f"{test}, line 3: the label `zebra` does not occur in the training file {train}, "
        "whose labels are `cat`, `dog`"
    )


def test_a_validation_file_without_a_feature_column(tmp_path: Path) -> None:
    write(tmp_path, "train.csv", "label,a,b\n0,1,2\n")
    valid = write(tmp_path, "valid.csv", "label,a\n0,1\n")
    message = csv_error(tmp_path, train="train.csv", validation="valid.csv")
    assert message == (
        f"{valid}: no feature column `b`; the columns are `label`, `a` (see dataset.csv.features)"
    )


# ---------------------------------------------------------------------------------------------
# Image folders


def digit_image(light_on_dark: bool, size: int = 8, mode: str = "L") -> Image.Image:
    """A small picture: a bar of ink across the middle of a plain background."""
    background, ink = (0, 255) if light_on_dark else (255, 0)
    pixels = np.full((size, size), background, np.uint8)
    pixels[size // 2 - 1 : size // 2 + 1, 2:-2] = ink
    return Image.fromarray(pixels).convert(mode)


def image_folder(
    root: Path, classes: dict[str, int], light_on_dark: bool = True, mode: str = "L"
) -> Path:
    """`root/<class>/<n>.png` for each class and count."""
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            digit_image(light_on_dark, mode=mode).save(root / name / f"{index}.png")
    return root


def images_error(folder: Path, **source: object) -> str:
    with pytest.raises(DataError) as raised:
        load_images(ImagesSource(**source), folder)  # type: ignore[arg-type]
    return str(raised.value)


def test_class_folders_become_int64_labels_and_uint8_images(tmp_path: Path) -> None:
    image_folder(tmp_path / "train", {"cat": 2, "ant": 3})
    image_folder(tmp_path / "test", {"cat": 1, "ant": 1})
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (tmp_path / "train" / ".cache").mkdir()
    source = ImagesSource(train="train", test="test", image_size=[6, 10], color_mode="grayscale")
    train, validation, test, info = load_images(source, tmp_path)
    assert train.x.shape == (5, 6, 10, 1) and train.x.dtype == np.uint8
    assert train.y.dtype == np.int64 and train.y.tolist() == [0, 0, 0, 1, 1]
    assert validation is None and test is not None and test.y.tolist() == [0, 1]
    assert info.class_names == ["ant", "cat"]
    assert info.image == ImageInfo(6, 10, 1, "light_on_dark")
    assert info.source == "train"


def test_training_decodes_exactly_as_predict_does_raw(tmp_path: Path) -> None:
    image_folder(tmp_path / "train", {"a": 1, "b": 1}, mode="RGB")
    source = ImagesSource(train="train", image_size=[5, 5], color_mode="rgb")
    train, _, _, _ = load_images(source, tmp_path)
    expected = to_array(
        open_image(tmp_path / "train" / "a" / "0.png"), ImageInfo(5, 5, 3), raw=True
    )
    assert np.array_equal(train.x[0], expected)


@pytest.mark.parametrize(
    ("light_on_dark", "color_mode", "polarity"),
    [(False, "grayscale", "dark_on_light"), (True, "rgb", None), (True, "rgba", None)],
)
def test_polarity_is_recorded_for_grayscale_images_only(
    tmp_path: Path, light_on_dark: bool, color_mode: str, polarity: str | None
) -> None:
    image_folder(tmp_path / "train", {"a": 2, "b": 2}, light_on_dark=light_on_dark)
    source = ImagesSource(train="train", image_size=[8, 8], color_mode=color_mode)
    train, _, _, info = load_images(source, tmp_path)
    assert info.image is not None and info.image.polarity == polarity
    assert train.x.shape[-1] == {"grayscale": 1, "rgb": 3, "rgba": 4}[color_mode]


def test_mixed_polarity_is_left_unknown(tmp_path: Path) -> None:
    image_folder(tmp_path / "train", {"a": 2}, light_on_dark=True)
    image_folder(tmp_path / "train", {"b": 2}, light_on_dark=False)
    source = ImagesSource(train="train", image_size=[8, 8], color_mode="grayscale")
    _, _, _, info = load_images(source, tmp_path)
    assert info.image is not None and info.image.polarity is None


def test_bad_files_are_all_counted_and_the_first_named(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "train", {"a": 2, "b": 2})
    (root / "a" / "notes.png").write_text("not a picture")
    (root / "b" / "zz.jpg").write_bytes(b"\xff\xd8\xff")
    source = ImagesSource(train="train", image_size=[8, 8])
    assert images_error(tmp_path, **source.model_dump()) == (
        f"2 of 6 image files cannot be read; the first: {root / 'a' / 'notes.png'}: "
        "not an image (cannot identify image file)"
    )


def test_skip_bad_leaves_bad_files_out_and_counts_them(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "train", {"a": 2, "b": 2})
    (root / "a" / "notes.png").write_text("not a picture")
    source = ImagesSource(train="train", image_size=[8, 8])
    train, _, _, info = load_images(source, tmp_path, skip_bad=True)
    assert len(train) == 4 and train.y.tolist() == [0, 0, 1, 1]
    assert info.skipped == 1


def test_image_folder_errors(tmp_path: Path) -> None:
    size = {"image_size": [8, 8]}
    assert images_error(tmp_path, train="nope", **size) == (
        f"image folder not found: {tmp_path / 'nope'}"
    )
    one = image_folder(tmp_path / "one", {"only": 2})
    (one / "loose.png").write_bytes(b"")
    assert images_error(tmp_path, train="one", **size) == (
        f"{one}: found 1 class folder(s) (`only`); expected one subfolder of images per "
        "class, at least two"
    )
    empty = image_folder(tmp_path / "empty", {"a": 1})
    (empty / "b").mkdir()
    assert images_error(tmp_path, train="empty", **size) == (
        f"{empty / 'b'}: the class folder `b` holds no image files"
    )
    train = image_folder(tmp_path / "train", {"a": 1, "b": 1})
    valid = image_folder(tmp_path / "valid", {"a": 1, "c": 1})
    assert images_error(tmp_path, train="train", validation="valid", **size) == (
        f"{valid}: its class folders (`a`, `c`) differ from those of the training folder "
        f"{train}: (`a`, `b`)"
    )


def test_a_split_whose_files_are_all_skipped(tmp_path: Path) -> None:
    image_folder(tmp_path / "train", {"a": 1, "b": 1})
    test = tmp_path / "test"
    for name in ("a", "b"):
        (test / name).mkdir(parents=True)
        (test / name / "bad.png").write_text("no")
    source = ImagesSource(train="train", test="test", image_size=[8, 8])
    with pytest.raises(DataError) as raised:
        load_images(source, tmp_path, skip_bad=True)
    assert str(raised.value) == f"{test}: none of its image files can be read"
