"""The data a trained model is given: the files of its dataset, and `dlcli predict`'s inputs.

For `dlcli evaluate`, the dataset that dlcli.json names is found again from the model's run
folder, and each split named by the file it comes from. For `dlcli predict`, images are
decoded here and converted by `dlcli.data.decode.to_array` into exactly what the model was trained
on; .csv files are read by the one CSV reader (`dlcli.data.csv_tables.read_rows`), .npy files by
numpy without pickles, and .txt files, for a model of one text column (text folders, or a CSV
table of one text column), by `dlcli.data.text_folders.read_text`, each one example. Inputs
held in memory (`MemoryInput`: the bytes of an image or CSV file, a decoded image, arrays, rows
as mappings, a text) go through the same code, without temporary files.
Each input that cannot be read is one InputError, so the other inputs are still predicted.
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.data.common import Arrays, ImageInfo
from dlcli.data.csv_tables import is_header, read_columns, read_rows
from dlcli.errors import DataError, InputError, InputTooLargeError
from dlcli.model.signature import ModelTask, Task, shape_fits
from dlcli.spec.schema import ColorMode, DatasetSpec

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelInfo

WORKERS = min(4, os.cpu_count() or 1)  # threads converting images (numpy and PIL release the GIL)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".npy")
TEXT_SUFFIXES = (".txt",)  # one text each, for a model of one text column
MAX_CSV_BYTES = 256 * 1024**2
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclass(frozen=True, eq=False)  # by identity: the value may be an array
class MemoryInput:
    """An input to predict held in memory, named (like a file) in the results and messages.

    `value` is one of:

    - the bytes of an encoded image (PNG, JPEG, BMP, GIF, WebP) for a model of images, or of a
      CSV file for a model of rows: read exactly as a file of that content is;
    - a decoded `PIL.Image.Image`: converted as a decoded image file is;
    - a numpy array: one example of the model's input shape, or a stack of them, fed as they
      are (as a .npy file is); for a model of several inputs, a mapping of input name -> array;
    - a row as a mapping of column name -> number, or a list of them, for a model of rows
      whose columns have names;
    - a str, or the bytes of a `.txt` file (a `name` ending in .txt), for a model of one text
      column: one example.

    Example:

    ```python
    MemoryInput("upload.png", Path("7.png").read_bytes())
    MemoryInput("row", {"a": 0.5, "b": -1.0})
    ```
    """

    name: str
    value: Any

    def holds_image(self, description: InputDescription) -> bool:
        """Whether the value is one image (an image model's bytes or a decoded image)."""
        from PIL import Image

        encoded = isinstance(self.value, bytes | bytearray | memoryview)
        return isinstance(self.value, Image.Image) or (encoded and description.image is not None)


Input = Path | MemoryInput  # an input file, or one held in memory


@dataclass(frozen=True)
class InputDescription:
    """What the model takes: from dlcli.json, or assumed from a plain Keras model's shape."""

    shape: tuple[int | None, ...]  # without the batch axis; () for a model of several inputs
    task: ModelTask
    class_names: list[str] | None
    image: ImageInfo | None = None
    feature_names: list[str] | None = None
    inputs: dict[str, list[str]] | None = None  # the columns of each input, for several
    outputs: dict[str, tuple[Task, list[str] | None]] | None = None  # task, class names by output

    def heads(self) -> dict[str, tuple[Task, list[str] | None]]:
        """The task and class names of each output by name (the one output's name is "")."""
        if self.outputs:
            return self.outputs
        assert isinstance(self.task, Task)  # one output: not "multioutput"
        return {"": (self.task, self.class_names)}

    # the columns of a CSV-trained model (artifact.ColumnsRecord): typed ones are read raw, by
    # name; an empty numeric cell is filled as in training
    table: Any = None
    windows: Any = None  # a time series (schema.WindowsSpec): a .csv file gives its last window

    @property
    def text_column(self) -> str | None:
        """The one column of a model that takes one text (text folders, or a table of one
        text column), which a .txt file fills; None for any other model."""
        kinds = self.table.kinds if self.table is not None else {}
        return next(iter(kinds)) if list(kinds.values()) == ["text"] else None

    def holds_text(self, given: Input) -> bool:
        """Whether an input is one text for the model's text column: a .txt file, a str, or
        the bytes of a .txt file held in memory."""
        if self.text_column is None:
            return False
        if isinstance(given, MemoryInput):
            encoded = isinstance(given.value, bytes | bytearray | memoryview)
            named = given.name.lower().endswith(TEXT_SUFFIXES)
            return isinstance(given.value, str) or (encoded and named)
        return given.suffix.lower() in TEXT_SUFFIXES


# ---------------------------------------------------------------------------------------------
# The model's dataset (evaluate)


def _recorded_spec_dir(model_path: Path) -> list[Path]:
    """The spec's folder as the run directory's run.json records it, if it does."""
    import json

    with suppress(OSError, ValueError, AttributeError):
        folder = json.loads((model_path.parent / "run.json").read_text()).get("spec_dir")
        if isinstance(folder, str):
            return [Path(folder)]
    return []


def _relative_paths(dataset: DatasetSpec) -> list[str]:
    return [
        value
        for source in (dataset.npz, dataset.csv, dataset.images, dataset.text_folders)
        if source is not None
        for value in (getattr(source, "path", None), getattr(source, "train", None))
        if value and not Path(value).expanduser().is_absolute()
    ]


def dataset_base_dir(dataset: DatasetSpec, model_path: Path) -> Path:
    """The folder the spec's relative dataset paths start from.

    The spec's folder where the run directory's run.json records it; otherwise the folder
    `dlcli train` was run from (the run directory's parent's parent, for the default
    `output.dir: runs`) and the current folder are tried, in that order.
    """
    relative = _relative_paths(dataset)
    candidates = _recorded_spec_dir(model_path)
    candidates += [model_path.resolve().parent.parent.parent, Path.cwd()]
    if not relative:
        return candidates[0]
    for candidate in candidates:
        if all((candidate / value).exists() for value in relative):
            return candidate
    looked = ", ".join(str(candidate) for candidate in dict.fromkeys(candidates))
    raise DataError(
        f"the model was trained on {relative[0]}, which was not found relative to {looked}; "
        "run evaluate from the folder of the spec, or pass the data with --data PATH"
    )


def split_source(dataset: DatasetSpec, split: str, base_dir: Path) -> str:
    """The file, folder or Keras dataset a split comes from, as the spec names it.

    A split that the spec's `validation_split` or `test_split` holds out of the training data
    says so; `test` of a source without test data is its training data.

    Example:
        split_source(DatasetSpec(csv=CsvSource(train="a.csv", test="b.csv")), "test", Path())
        # 'b.csv'
    """
    origin: dict[str, str | None] = {}
    if dataset.name:
        origin = {
            "train": f"keras.datasets.{dataset.name} (training set)",
            "test": f"keras.datasets.{dataset.name} (test set)",
        }
    elif dataset.npz:
        npz = dataset.npz
        held: set[str] = set()
        npz_path = base_dir / Path(npz.path).expanduser()
        with (
            suppress(OSError, ValueError, zipfile.BadZipFile),
            np.load(npz_path, allow_pickle=False) as file,
        ):
            held = set(file.files)
        pairs = {
            "train": (npz.x_train, npz.y_train),
            "validation": (npz.x_validation, npz.y_validation),
            "test": (npz.x_test, npz.y_test),
        }
        origin = {
            name: f"{npz.path} ({x_key}, {y_key})"
            for name, (x_key, y_key) in pairs.items()
            if name == "train" or x_key in held
        }
    elif dataset.csv or dataset.images or dataset.text_folders:
        files = dataset.csv or dataset.images or dataset.text_folders
        assert files is not None
        origin = {"train": files.train, "validation": files.validation, "test": files.test}
    elif dataset.inline:
        origin = {"train": "dataset.inline (x, y)"}
        if dataset.inline.x_test is not None:
            origin["test"] = "dataset.inline (x_test, y_test)"
    found = origin.get(split)
    if found:
        return found
    train = str(origin["train"])
    fraction = {"test": dataset.test_split, "validation": dataset.validation_split}.get(split)
    if fraction:
        purpose = "as the test split" if split == "test" else "for validation"
        return f"{train}, {fraction:.0%} held out {purpose}"
    return train


def file_dataset(path: Path, split: str, info: ModelInfo) -> DatasetSpec:
    """A DatasetSpec that reads all of `path` as its training split (for --data)."""
    from dlcli.spec.schema import CsvSource, ImagesSource, NpzSource

    original = info.spec.dataset
    if path.is_dir() and original.text_folders is not None:
        folders = original.text_folders.model_copy(
            update={"train": str(path), "validation": None, "test": None}
        )
        return DatasetSpec(text_folders=folders)
    if path.is_dir():
        image = info.input.image if info.input is not None else None
        if image is None:
            raise DataError(f"{path}: a folder of images, but the model was not trained on images")
        modes: dict[int, ColorMode] = {1: "grayscale", 3: "rgb", 4: "rgba"}
        mode = modes[image.channels]
        size = [image.height, image.width]
        return DatasetSpec(images=ImagesSource(train=str(path), image_size=size, color_mode=mode))
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as file:
            names = set(file.files)
        short = {"validation": "val"}.get(split, split)

        def held(key: str) -> bool:  # one array, or one per model input or output (x_test_NAME)
            return key in names or (len(key) > 1 and any(n.startswith(f"{key}_") for n in names))

        for x_key, y_key in ((f"x_{short}", f"y_{short}"), ("x", "y")):
            if held(x_key) and held(y_key):
                return DatasetSpec(npz=NpzSource(path=str(path), x_train=x_key, y_train=y_key))
        raise DataError(
            f"{path}: has no `x_{short}`/`y_{short}` or `x`/`y` arrays; it holds "
            f"{', '.join(sorted(names)) or 'nothing'}"
        )
    if path.suffix.lower() == ".csv":
        if original.csv is None:
            return DatasetSpec(csv=CsvSource(train=str(path)))
        unused = {"validation": None, "test": None, "weight": None}  # the columns stay the same
        return DatasetSpec(csv=original.csv.model_copy(update={"train": str(path), **unused}))
    raise DataError(
        f"{path}: --data takes a .npz file, a .csv file or a folder of images or of .txt files "
        "(one subfolder per class)"
    )


# ---------------------------------------------------------------------------------------------
# What a file holds, from its header alone (to choose a model)


@dataclass(frozen=True)
class InputFile:
    """What one input file holds, read from its header: an image or rows of values."""

    image: tuple[int, int, bool] | None = None  # height, width, grayscale
    columns: list[str] | None = None  # a .csv header
    shape: tuple[int, ...] | None = None  # a .npy array, or (columns,) of a .csv
    text: bool = False  # a .txt file

    def describe(self) -> str:
        if self.text:
            return "text files"
        if self.image is not None:
            height, width, grey = self.image
            return f"{height}x{width} {'grayscale' if grey else 'colour'} images"
        assert self.shape is not None
        return f"rows of {self.shape[-1]} values" if len(self.shape) <= 2 else "arrays"


def peek(path: Path) -> InputFile | None:
    """The header of an input file; None when it cannot be read (reported when predicted)."""
    from PIL import Image

    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return InputFile(text=True)
    try:
        if suffix == ".npy":
            return InputFile(shape=np.load(path, mmap_mode="r", allow_pickle=False).shape)
        if suffix == ".csv":
            _, first = next(read_rows(path, InputError))
            header = [cell.strip() for cell in first] if is_header(first) else None
            return InputFile(columns=header, shape=(len(first),))
        with Image.open(path) as image:
            return InputFile(image=(image.height, image.width, image.mode in _GREY_MODES))
    except (OSError, ValueError, StopIteration, InputError, SyntaxError):
        return None


# ---------------------------------------------------------------------------------------------
# Reading


def expand_inputs(
    inputs: Sequence[str | Path | MemoryInput], suffixes: tuple[str, ...]
) -> tuple[list[Input], list[str]]:
    """Files named, found in folders (recursively, with `suffixes`) or matched by glob patterns;
    inputs held in memory are kept as they are, in their place."""
    files: dict[Input, None] = {}
    problems: list[str] = []
    for given in inputs:
        if isinstance(given, MemoryInput):
            files[given] = None
            continue
        text = str(given)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
            if not found:
                problems.append(f"{text}: no {', '.join(suffixes)} files in this folder")
            files.update(dict.fromkeys(found))
        elif path.exists():
            files[path] = None
        elif glob.has_magic(text):
            found = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
            )
            if not found:
                problems.append(f"{text}: no files match this pattern")
            files.update(dict.fromkeys(found))
        else:
            problems.append(f"{text}: no such file")
    return list(files), problems


def _read_csv(path: Path | str, description: InputDescription, data: bytes | None = None) -> Arrays:
    """Rows of features; a header row selects the model's features by name. A model of
    several inputs takes a mapping of each input's columns, which the header must name.
    With `data`, the file's content is those bytes and `path` only names it."""
    if description.windows is not None:  # a series: the window that ends at its last row
        from dlcli.data.time_windows import last_window

        size = len(data) if data is not None else Path(path).stat().st_size
        if size > MAX_CSV_BYTES:
            raise InputError(f"{path}: larger than {MAX_CSV_BYTES // 1024**2} MiB; split it")
        names = list(description.feature_names or [])
        return last_window(Path(path), names, description.windows, error=InputError, data=data)
    table = description.table
    if table is not None and table.encoded:  # the raw columns, read as in training
        size = len(data) if data is not None else Path(path).stat().st_size
        if size > MAX_CSV_BYTES:
            raise InputError(f"{path}: larger than {MAX_CSV_BYTES // 1024**2} MiB; split it")
        return read_columns(
            Path(path),
            table.kinds,
            policy=table.missing,
            fill=table.fill,
            error=InputError,
            data=data,
        )
    if description.inputs is not None:
        column_names = list(
            dict.fromkeys(c for names in description.inputs.values() for c in names)
        )
        first = next((row for _, row in read_rows(path, InputError, data)), None)
        if first is not None and not is_header(first):
            raise InputError(
                f"{path}: has no header row; the model takes several inputs, whose columns "
                f"the header must name: {', '.join(column_names)}"
            )
        table = _read_csv(
            path,
            replace(
                description, shape=(len(column_names),), inputs=None, feature_names=column_names
            ),
            data,
        )
        return {
            name: table[:, [column_names.index(column) for column in names]]
            for name, names in description.inputs.items()
        }
    if len(description.shape) != 1:
        raise InputError(
            f"{path}: a .csv file holds rows of features, but the model takes inputs of shape "
            f"{description.shape}"
        )
    features = int(description.shape[0] or 0)
    size = Path(path).stat().st_size if data is None else len(data)
    if size > MAX_CSV_BYTES:
        raise InputTooLargeError(f"{path}: larger than {MAX_CSV_BYTES // 1024**2} MiB; split it")
    try:
        rows = list(read_rows(path, InputError, data))
    except OSError as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from error
    if not rows:
        raise InputError(f"{path}: the file holds no rows")
    first = rows[0][1]
    header = [cell.strip() for cell in first] if is_header(first) else None
    body = rows[1:] if header else rows
    columns = list(range(len(first)))
    if header and description.feature_names:
        missing = [name for name in description.feature_names if name not in header]
        if missing:
            raise InputError(
                f"{path}: has no column {', '.join(missing)} (the model takes "
                f"{', '.join(description.feature_names)})"
            )
        columns = [header.index(name) for name in description.feature_names]
    if len(columns) != features:
        raise InputError(
            f"{path}: rows have {len(columns)} values but the model takes {features} features"
        )
    names = description.feature_names or [f"column {column + 1}" for column in columns]
    fill = _empty_cell_values(names, table)
    values = np.empty((len(body), features), dtype="float32")
    for number, (line, row) in enumerate(body):
        try:
            cells = [row[column].strip() for column in columns]
            values[number] = [
                float(cell) if cell else fill[name] for name, cell in zip(names, cells, strict=True)
            ]
        except (ValueError, IndexError):
            raise InputError(
                f"{path}, line {line}: expected {features} numbers, found {row!r}"
            ) from None
        except KeyError as error:
            raise InputError(
                f"{path}, line {line}: `{error.args[0]}` is empty, and {_no_fill(table)}"
            ) from None
    if not np.isfinite(values).all():
        raise InputError(f"{path}: holds NaN or Inf values")
    return values


def _empty_cell_values(names: list[str], table: Any) -> dict[str, float]:
    """What fills an empty cell of each feature: the training means the model recorded, when
    it was trained with `dataset.csv.missing: mean`; otherwise nothing does."""
    if table is None or table.missing != "mean":
        return {}
    return {name: table.fill[name] for name in names if name in table.fill}


def _no_fill(table: Any) -> str:
    """Why an empty cell cannot be filled, for a message."""
    if table is None:
        return "the model records no values to fill it with; fill in the cell"
    if table.missing != "mean":
        return (
            f"the model was trained with `dataset.csv.missing: {table.missing}`; fill in the cell"
        )
    return "the training data had no empty cell there, so no mean was recorded; fill in the cell"


def _read_npy(path: Path, description: InputDescription) -> np.ndarray:
    """One example of the model's input shape, or a stack of them."""
    if description.inputs is not None:
        raise InputError(
            f"{path}: the model takes several inputs ({', '.join(description.inputs)}); give "
            "it .csv files whose header names their columns"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise InputError(f"{path}: holds Python objects (pickle), which are refused") from error
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: not a readable .npy file ({error})") from error
    return _examples(array, description.shape, str(path))


def _examples(array: np.ndarray, expected: tuple[int | None, ...], name: str) -> np.ndarray:
    """One example of the `expected` shape made a stack of one, or a stack of them as it is."""
    if shape_fits(array.shape, expected):
        array = array[None]
    elif not shape_fits(array.shape[1:], expected):
        raise InputError(
            f"{name}: holds an array of shape {array.shape}, but the model takes "
            f"{expected} or a stack of them"
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise InputError(f"{name}: holds {array.dtype} values, not numbers")
    return array


def _memory_rows(given: MemoryInput, description: InputDescription) -> Arrays:
    """The examples of an input held in memory that is not one image."""
    value, name = given.value, given.name
    if isinstance(value, bytes | bytearray | memoryview):
        return _read_csv(name, description, bytes(value))
    if isinstance(value, np.ndarray):
        if description.inputs is not None:
            raise InputError(
                f"{name}: the model takes several inputs ({', '.join(description.inputs)}); "
                "give a mapping of input name -> array"
            )
        return _examples(value, description.shape, name)
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(v, np.ndarray) for v in value.values())
    ):
        return _arrays_by_input(value, description, name)
    if isinstance(value, Mapping) or (
        isinstance(value, Sequence) and value and all(isinstance(v, Mapping) for v in value)
    ):
        return _read_mappings(
            [value] if isinstance(value, Mapping) else list(value), description, name
        )
    raise InputError(
        f"{name}: holds a {type(value).__name__}; predict takes image or CSV bytes, a PIL "
        "image, numpy arrays, or rows as mappings of column name -> value"
    )


def _arrays_by_input(
    value: Mapping[str, np.ndarray], description: InputDescription, name: str
) -> dict[str, np.ndarray]:
    """Arrays by model input name, each checked against its input's columns."""
    if description.inputs is None:
        raise InputError(f"{name}: the model takes one input; give it one array")
    missing = [input_name for input_name in description.inputs if input_name not in value]
    unknown = [input_name for input_name in value if input_name not in description.inputs]
    if missing or unknown:
        raise InputError(
            f"{name}: the model takes the inputs {', '.join(description.inputs)}; received "
            f"{', '.join(value) or 'none'}"
        )
    arrays = {
        input_name: _examples(
            np.asarray(value[input_name]), (len(columns),), f"{name}, input {input_name}"
        )
        for input_name, columns in description.inputs.items()
    }
    if len({len(array) for array in arrays.values()}) > 1:
        raise InputError(f"{name}: the inputs hold different numbers of examples")
    return arrays


def _read_mappings(
    rows: list[Mapping[str, Any]], description: InputDescription, name: str
) -> Arrays:
    """Rows given as mappings of column name -> number, as a model of rows takes them."""
    if description.inputs is not None:
        columns = list(dict.fromkeys(c for names in description.inputs.values() for c in names))
    else:
        columns = list(description.feature_names or [])
    if not columns:
        raise InputError(
            f"{name}: the model's columns have no names, so rows cannot be given by name; "
            "give them as arrays"
        )
    values = np.empty((len(rows), len(columns)), dtype="float32")
    for number, row in enumerate(rows):
        missing = [column for column in columns if column not in row]
        if missing:
            raise InputError(
                f"{name}, row {number}: has no column {', '.join(missing)} (the model takes "
                f"{', '.join(columns)})"
            )
        try:
            values[number] = [float(row[column]) for column in columns]
        except (TypeError, ValueError):
            raise InputError(
                f"{name}, row {number}: expected numbers for {', '.join(columns)}"
            ) from None
    if not np.isfinite(values).all():
        raise InputError(f"{name}: holds NaN or Inf values")
    if description.inputs is None:
        return values
    return {
        input_name: values[:, [columns.index(column) for column in names]]
        for input_name, names in description.inputs.items()
    }


def _text(given: Input, description: InputDescription) -> dict[str, np.ndarray]:
    """One text (a .txt file, a str, or a .txt file's bytes) as the model's text column."""
    from dlcli.data.text_folders import read_text

    column = description.text_column
    assert column is not None
    if isinstance(given, Path):
        text = read_text(given, InputError)
    elif isinstance(given.value, str):
        text = given.value
    else:
        text = read_text(given.name, InputError, bytes(given.value))
    texts = np.empty(1, dtype=object)
    texts[0] = text.strip()  # as the training texts are read
    return {column: texts}


def _rows(path: Input, description: InputDescription) -> Arrays:
    """The examples of a .npy or .csv file or of an input held in memory; an image file for a
    model that takes rows fails."""
    if isinstance(path, MemoryInput):
        return _memory_rows(path, description)
    if path.suffix.lower() == ".npy":
        return _read_npy(path, description)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, description)
    suffix = path.suffix.lower()
    given = "images" if suffix in IMAGE_SUFFIXES else f"{suffix} files" if suffix else "this file"
    if description.inputs is not None:  # columns by name: .csv files whose header names them
        columns = [name for names in description.inputs.values() for name in names]
        raise InputError(
            f"{path}: the model takes rows of the columns {', '.join(columns)} (.csv files), "
            f"not {given}"
        )
    raise InputError(
        f"{path}: the model takes rows of {description.shape[0]} features (.csv or .npy "
        f"files), not {given}"
    )


def holds_rows(given: Input, description: InputDescription) -> bool:
    """Whether an input holds rows (numbered in the results) rather than one image or text."""
    if description.holds_text(given):
        return False
    if isinstance(given, MemoryInput):
        return not given.holds_image(description)
    return given.suffix.lower() in TABLE_SUFFIXES or description.image is None


def _start(pool: ThreadPoolExecutor, path: Input, description: InputDescription, raw: bool) -> Any:
    """Begin reading one input: its examples, or a Future of an image's pixels."""
    from dlcli.data import decode

    if description.holds_text(path):
        return _text(path, description)
    if holds_rows(path, description):
        return _rows(path, description)
    assert description.image is not None
    if not isinstance(path, MemoryInput):
        image = decode.open_image(path)
    elif isinstance(path.value, bytes | bytearray | memoryview):
        image = decode.open_image(path.name, bytes(path.value))
    else:
        image = decode.normalized(path.value)
    return pool.submit(decode.to_array, image, description.image, raw=raw)


def read_inputs(
    files: Sequence[Input], description: InputDescription, raw: bool
) -> Iterator[tuple[Input, Arrays | InputError]]:
    """Each input's examples, shaped as the model takes them, or the InputError it raised.

    Inputs come back in order. Images are decoded on this thread and converted by
    `dlcli.data.decode.to_array` on worker threads, a few at a time, while the next are decoded.
    """
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        window: deque[tuple[Input, Any]] = deque()

        def finish() -> tuple[Input, Arrays | InputError]:
            path, pending = window.popleft()
            if not isinstance(pending, Future):
                return path, pending
            try:
                pixels = pending.result()
            except InputError as error:
                return path, error
            if len(description.shape) == 2 and pixels.ndim == 3:
                pixels = pixels[..., 0]  # e.g. MNIST: the model takes (28, 28)
            return path, pixels[None]

        for path in files:
            try:
                window.append((path, _start(pool, path, description, raw)))
            except InputError as error:
                window.append((path, error))
            if len(window) > 2 * WORKERS:
                yield finish()
        while window:
            yield finish()
