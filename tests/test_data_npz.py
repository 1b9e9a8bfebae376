"""Tests of .npz datasets that cannot be used (one line, exit 4) and of `check_files`, the
check `dlcli validate` makes that the data files a spec names exist."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import dlcli.data.load
from dlcli.data.inline import load_inline
from dlcli.data.load import check_files
from dlcli.data.npz import load_npz
from dlcli.errors import DataError
from dlcli.spec.schema import DatasetSpec, InlineSource, NpzSource

X = np.zeros((3, 4), "float32")
Y = np.array([0, 1, 0])


def savez(**arrays: object) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def text(path: Path) -> None:
    path.write_text("x_train,y_train\n1,2\n")


def renamed_npy(path: Path) -> None:
    np.save(path.with_suffix(".npy"), X)
    path.with_suffix(".npy").rename(path)


def corrupt_member(path: Path) -> None:
    """A compressed archive whose x_train.npy holds an invalid deflate block."""
    rows = np.arange(4000, dtype="float32").reshape(1000, 4)
    np.savez_compressed(path, x_train=rows, y_train=np.zeros(1000, "int64"))
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("x_train.npy")
    raw = bytearray(path.read_bytes())
    header = member.header_offset  # a local header: 30 bytes, then the name and the extra field
    lengths = int.from_bytes(raw[header + 26 : header + 30], "little")
    data = header + 30 + (lengths & 0xFFFF) + (lengths >> 16)
    raw[data] = 0b111  # BFINAL=1, BTYPE=11: the reserved block type
    path.write_bytes(bytes(raw))


def not_npy_member(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train", b"1,2,3")
        archive.writestr("y_train.npy", b"")


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (text, "{path}: not an .npz file; expected a zip archive of arrays, as numpy.savez writes"),
        (
            renamed_npy,
            "{path}: holds one .npy array, not an .npz archive of named arrays; save them with "
            "numpy.savez(path, x_train=..., y_train=...)",
        ),
        (
            corrupt_member,
            "{path}: the array `x_train` cannot be read (Error -3 while decompressing data: "
            "invalid block type); the file is damaged, save it again",
        ),
        (
            not_npy_member,
            "{path}: `x_train` is not a numpy array (.npy) member; save the arrays with "
            "numpy.savez",
        ),
        (
            savez(x_train=np.array(1.0), y_train=np.array(0)),
            "{path}: `x_train` is a single value (a 0-d array); expected one row per example",
        ),
        (
            savez(x_train=X, y_train=np.array(0)),
            "{path}: `y_train` is a single value (a 0-d array); expected one row per example",
        ),
        (
            savez(x_train=np.zeros((0, 4)), y_train=np.zeros(0)),
            "{path}: `x_train` and `y_train` have no rows; expected one per example",
        ),
        (
            savez(x_train=X, y_train=Y, x_val=X, y_val=Y[:2]),
            "{path}: `x_val` has 3 rows but `y_val` has 2",
        ),
        (
            savez(x_train=np.array([["a", "b"], ["c", "d"]]), y_train=Y[:2]),
            "{path}: `x_train` holds strings (dtype <U1); expected numbers",
        ),
        (
            savez(x_train=X, y_train=np.array(["cat", "dog", "cat"])),
            "{path}: `y_train` holds strings (the first is 'cat'); use integer class indices "
            "0, 1, 2, ... (or a CSV file, whose string labels become class names)",
        ),
        (
            savez(x_train=X, y_train=np.array([b"cat", b"dog", b"cat"])),
            "{path}: `y_train` holds strings (the first is b'cat'); use integer class indices "
            "0, 1, 2, ... (or a CSV file, whose string labels become class names)",
        ),
        (
            savez(x_train=X.astype("complex64"), y_train=Y),
            "{path}: `x_train` has dtype complex64; expected real numbers (integers, floats or "
            "booleans)",
        ),
        (
            savez(x_train=X, y_train=Y, x_test=X.astype("datetime64[s]"), y_test=Y),
            "{path}: `x_test` has dtype datetime64[s]; expected real numbers (integers, floats "
            "or booleans)",
        ),
        (
            savez(x_train=X, y_train=np.array([1, None, 2], dtype=object)),
            "{path}: `y_train` holds Python objects (pickle), which are refused; save plain "
            "numeric arrays",
        ),
    ],
    ids=[
        "text",
        "npy",
        "corrupt",
        "member",
        "0-d x",
        "0-d y",
        "no rows",
        "val rows",
        "string x",
        "string y",
        "bytes y",
        "complex",
        "datetime",
        "objects",
    ],
)
def test_unusable_npz_files_are_one_line(
    tmp_path: Path, write: Callable[[Path], None], problem: str
) -> None:
    path = tmp_path / "data.npz"
    write(path)
    with pytest.raises(DataError) as raised:
        load_npz(NpzSource(path="data.npz"), tmp_path)
    assert str(raised.value) == problem.format(path=path)


def test_numbers_of_every_real_kind_load(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", x_train=X.astype(bool), y_train=Y.astype("uint8"))
    train, validation, test, _ = load_npz(NpzSource(path="data.npz"), tmp_path)
    assert train.x.dtype == bool and train.y.dtype == np.uint8 and len(train) == 3
    assert validation is None and test is None


# ---------------------------------------------------------------------------------------------
# check_files: what `dlcli validate` checks


@pytest.mark.parametrize(
    ("dataset", "present", "problem"),
    [
        (
            {"npz": "data.npz"},
            [],
            "dataset file not found: {base}/data.npz (dataset.npz in x.yaml)",
        ),
        (
            {"npz": {"path": "d/data.npz"}},
            ["d/data.npz/"],
            "dataset file not found: {base}/d/data.npz (dataset.npz in x.yaml)",
        ),
        (
            {"csv": {"train": "train.csv", "test": "../test.csv"}},
            ["train.csv"],
            "dataset file not found: {parent}/test.csv (dataset.csv.test in x.yaml)",
        ),
        (
            {"csv": {"train": "t.csv", "validation": "v.csv"}},
            ["t.csv"],
            "dataset file not found: {base}/v.csv (dataset.csv.validation in x.yaml)",
        ),
        (
            {"images": {"train": "images", "image_size": [8, 8]}},
            ["images"],
            "dataset folder not found: {base}/images (dataset.images.train in x.yaml)",
        ),
        (
            {"images": {"train": "a/", "test": "b/", "image_size": [8, 8]}},
            ["a/"],
            "dataset folder not found: {base}/b (dataset.images.test in x.yaml)",
        ),
    ],
)
def test_check_files_names_the_missing_file_and_its_key(
    tmp_path: Path, dataset: dict, present: list[str], problem: str
) -> None:
    base = tmp_path / "specs"
    base.mkdir()
    for name in present:  # a trailing slash makes a folder
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).mkdir() if name.endswith("/") else (base / name).touch()
    with pytest.raises(DataError) as raised:
        check_files(DatasetSpec(**dataset), base, Path("x.yaml"))
    assert str(raised.value) == problem.format(base=base, parent=tmp_path)


def test_check_files_passes_present_files_and_sources_without_files(tmp_path: Path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "train.csv").touch()
    home_file = Path.home() / "dlcli-check-files-test.csv"
    for dataset in [
        {"name": "mnist"},
        {"inline": {"x": [[0]], "y": [0]}},
        {"csv": {"train": "train.csv", "test": str(tmp_path / "train.csv")}},
        {"images": {"train": "images/train", "image_size": [8, 8]}},
    ]:
        check_files(DatasetSpec(**dataset), tmp_path)
    with pytest.raises(DataError) as raised:
        check_files(DatasetSpec(csv={"train": f"~/{home_file.name}"}), tmp_path)
    assert str(raised.value) == f"dataset file not found: {home_file} (dataset.csv.train)"


def test_docstring_examples() -> None:
    assert doctest.testmod(dlcli.data.load).failed == 0


SPEC = """name: x
dataset:
  csv: {train: data/train.csv, test: data/test.csv}
model:
  input: [1]
  layers: [Dense: {units: 1}]
compile: {loss: mse}
fit: {epochs: 1}
"""


def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLCLI_", "KERAS_"))}
    env |= {"HOME": str(folder / "home"), "DLCLI_CACHE": os.environ["DLCLI_CACHE"]}
    command = [sys.executable, "-X", "importtime", "-m", "dlcli", "validate", "specs/x.yaml"]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, timeout=60)


def test_validate_refuses_a_missing_data_file_without_numpy_or_tensorflow(tmp_path: Path) -> None:
    (tmp_path / "specs" / "data").mkdir(parents=True)
    (tmp_path / "specs" / "x.yaml").write_text(SPEC)
    (tmp_path / "specs" / "data" / "train.csv").write_text("a,label\n1,0\n")
    result = validate(tmp_path)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time")]
    assert result.returncode == 4
    assert errors == [
        f"Error: dataset file not found: {tmp_path}/specs/data/test.csv "
        "(dataset.csv.test in specs/x.yaml)"
    ]
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] in ("numpy", "tensorflow")]
    (tmp_path / "specs" / "data" / "test.csv").write_text("a,label\n2,1\n")
    result = validate(tmp_path)
    assert result.returncode == 0 and result.stdout == "specs/x.yaml: valid (x: 1 layers)\n"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            {"x": [[0], [1]], "y": ["cat", "dog"]},
            "dataset.inline.y holds strings (the first is 'cat'); use integer class indices 0, 1, "
            "2, ... (or a CSV file, whose string labels become class names)",
        ),
        (
            {"x": [[0], [1]], "y": [None, 1]},
            "dataset.inline.y has dtype object; expected real numbers (integers, floats or "
            "booleans)",
        ),
        (
            {"x": [[0], [1]], "y": [[1, 2], [3]]},
            "dataset.inline.y: not a rectangular table of labels",
        ),
        ({"x": [[0], ["a"]], "y": [0, 1]}, "dataset.inline.x: not a rectangular table of numbers"),
        (
            {"x": [[0]], "y": [0], "x_test": [[1]], "y_test": [0, 1]},
            "dataset.inline: x_test has 1 rows but its labels 2",
        ),
    ],
)
def test_unusable_inline_data_is_one_line(source: dict, problem: str) -> None:
    with pytest.raises(DataError) as raised:
        load_inline(InlineSource(**source))
    assert str(raised.value) == problem
