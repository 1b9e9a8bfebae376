"""What every dataset source shares: the typed results, paths in a spec, checks on arrays.

Only the standard library is imported at module level: `dlcli validate` (`check_files`) and
`dlcli.data.decode` import this module, and numpy is imported inside the functions that use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlcli.errors import DataError

if TYPE_CHECKING:
    import numpy as np

Polarity = Literal["light_on_dark", "dark_on_light"]
Framing = Literal["mnist", "mnist-stroke"]
NUMBER_KINDS = "biuf"  # numpy dtype kinds of booleans, integers and real floats


@dataclass(frozen=True)
class ImageInfo:
    """How the training images look, so that predict can make new images look the same."""

    height: int
    width: int
    channels: int
    polarity: Polarity | None = None
    # "mnist": digits fitted in 20x20, centred by mass in 28x28 (as older models record);
    # "mnist-stroke": so too, with strokes as wide as MNIST's (as training on MNIST records)
    framing: Framing | None = None


# The examples or labels of a split: one array, or one per model input (output) by its name.
Arrays = Any  # np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True)
class Split:
    x: Arrays
    y: Arrays
    w: np.ndarray | None = None  # float32 weight per example (dataset.csv.weight), training only

    def __len__(self) -> int:
        return rows(self.y)


def flat(data: Arrays) -> list[np.ndarray]:
    """The arrays of `data`: itself, or those of a mapping in its order."""
    return list(data.values()) if isinstance(data, dict) else [data]


def rows(data: Arrays) -> int:
    """How many examples `data` holds (all its arrays hold as many)."""
    return len(flat(data)[0])


def take(data: Arrays, index: Any) -> Arrays:
    """The examples at `index` (a numpy index) of one array or of each array of a mapping."""
    if isinstance(data, dict):
        return {name: array[index] for name, array in data.items()}
    return data[index]


def in_memory(x: Any, positions: Any) -> Any:
    """The examples of x at `positions` as arrays: a stream's decoded
    (`dlcli.data.example_stream.ExampleStream`), an array's (or each array's of a mapping)
    taken (`take`)."""
    from dlcli.data.example_stream import ExampleStream

    return x.decode(positions) if isinstance(x, ExampleStream) else take(x, positions)


def in_order(data: Arrays, names: list[str]) -> Any:
    """The arrays of a mapping as the list of `names` (a model's outputs); an array as it is.

    Keras's `fit` takes the labels and sample weights of several outputs as lists in the
    order of `model.output_names` (a mapping of weights is refused).
    """
    return [data[name] for name in names] if isinstance(data, dict) else data


@dataclass(frozen=True)
class DatasetInfo:
    source: str
    class_names: list[str] | None = None  # of the one label column
    image: ImageInfo | None = None
    feature_names: list[str] | None = None  # the columns of the one input
    output_classes: dict[str, list[str] | None] | None = None  # class names by output
    input_features: dict[str, list[str]] | None = None  # feature names by input
    sizes: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    skipped: int = 0  # unreadable files left out (image folders with skip_bad)
    # CSV tables: each feature column's kind (number, integer, string) where the spec types
    # columns (`dataset.csv.columns`); what was done about empty cells (csv_tables.Missing);
    # the outputs whose label column held integers (class indices, or codes:
    # data.class_codes), "" naming the one output of a dataset of one label column
    column_kinds: dict[str, str] | None = None
    missing: Any = None
    integer_labels: frozenset[str] = frozenset()
    windows: Any = None  # time windows (dlcli.data.time_windows.Series): rows, statistics


@dataclass(frozen=True)
class Splits:
    train: Split
    test: Split
    validation: Split | None = None
    test_is_train: bool = False  # the source has no test data: evaluated on the training data
    info: DatasetInfo = field(default_factory=lambda: DatasetInfo(source=""))


def numeric_rows(array: np.ndarray, name: str, *, labels: bool) -> np.ndarray:
    """The array if it holds one row per example of numbers, else a DataError naming it.

    `name` says where it came from (a file's key, a spec's key); `labels` asks for class indices
    rather than strings in the message.
    """
    if array.ndim == 0:
        raise DataError(f"{name} is a single value (a 0-d array); expected one row per example")
    if array.dtype.kind in "US" and labels:
        example = array.reshape(-1)[0].item()
        raise DataError(
            f"{name} holds strings (the first is {example!r}); use integer class indices "
            "0, 1, 2, ... (or a CSV file, whose string labels become class names)"
        )
    if array.dtype.kind in "US":
        raise DataError(f"{name} holds strings (dtype {array.dtype}); expected numbers")
    if array.dtype.kind not in NUMBER_KINDS:
        raise DataError(
            f"{name} has dtype {array.dtype}; expected real numbers (integers, floats or booleans)"
        )
    return array


# What a class folder holds, in the messages about class folders: (the examples, their files)
CLASS_FOLDER_FILES = {"image": ("images", "image files"), "text": (".txt files", ".txt files")}


def class_folders(
    splits: dict[str, str | None], base_dir: Path, kind: Literal["image", "text"], suffix: str = ""
) -> tuple[dict[str, Path], dict[str, dict[str, list[Path]]], list[str]]:
    """The class folders of each split's folder (one subfolder per class, as Keras's
    `image_dataset_from_directory` and `text_dataset_from_directory` read them): (each split's
    folder, each split's class name -> its files, the sorted class names).

    A class's files are those in its folder and subfolders whose names end in `suffix`, sorted,
    hidden files and folders left out. `splits` maps train, validation and test to the spec's
    folders (None: not given), relative to `base_dir`.

    Raises:
        DataError: a folder is missing or has fewer than two class folders, a class folder
            holds no file, or a split's class names differ from the training folder's.
    """
    folders = {
        split: resolve_path(folder, base_dir)
        for split, folder in splits.items()
        if folder is not None
    }
    files = {split: _class_files(folder, kind, suffix) for split, folder in folders.items()}
    class_names = sorted(files["train"])
    for split, classes in files.items():
        if sorted(classes) != class_names:
            raise DataError(
                f"{folders[split]}: its class folders {listed(sorted(classes))} differ from those "
                f"of the training folder {folders['train']}: {listed(class_names)}"
            )
    return folders, files, class_names


def _class_files(folder: Path, kind: str, suffix: str) -> dict[str, list[Path]]:
    """Class name -> its files (sorted, hidden ones left out) for one dataset folder."""
    examples, named = CLASS_FOLDER_FILES[kind]
    if not folder.is_dir():
        raise DataError(f"{kind} folder not found: {folder}")
    classes = {
        entry.name: sorted(
            path
            for path in entry.rglob(f"*{suffix}")
            if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(entry).parts)
        )
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    }
    if len(classes) < 2:
        raise DataError(
            f"{folder}: found {len(classes)} class folder(s) {listed(sorted(classes))}; "
            f"expected one subfolder of {examples} per class, at least two"
        )
    for name, paths in sorted(classes.items()):
        if not paths:
            raise DataError(f"{folder / name}: the class folder `{name}` holds no {named}")
    return classes


def listed(names: list[str]) -> str:
    """(`a`, `b`, `c`): the first ten names, then how many more.

    >>> listed(["cat", "dog"])
    '(`cat`, `dog`)'
    """
    shown = ", ".join(f"`{name}`" for name in names[:10])
    return f"({shown}, and {len(names) - 10} more)" if len(names) > 10 else f"({shown})"


def resolve_path(path: str, base_dir: Path) -> Path:
    """A path written in a spec: relative to the spec's folder unless absolute; `~` expanded."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base_dir / resolved


DIGEST_CHUNK_BYTES = 64 * 1024 * 1024  # a stream's examples are hashed this much at a time


def digest(*arrays: Any) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes; names the data a model was trained on.

    An `ExampleStream` (time windows) is hashed as the array it stands for would be, its
    examples made a chunk at a time: the digest does not depend on how the data is held.
    """
    import numpy as np

    from dlcli.data.example_stream import ExampleStream

    hasher = hashlib.sha256()
    for array in arrays:
        if isinstance(array, ExampleStream):
            hasher.update(f"{array.dtype.str}{array.shape}".encode())
            for chunk in array.chunks(DIGEST_CHUNK_BYTES):
                hasher.update(chunk.data.cast("B"))
            continue
        if array.dtype == object:  # a text column: its cells, each ended by a NUL
            hasher.update(f"text{array.shape}".encode())
            hasher.update("".join(f"{cell}\0" for cell in array.ravel()).encode())
            continue
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(array.data.cast("B"))
    return hasher.hexdigest()


def check_finite(name: str, array: Any) -> None:
    """Refuse NaN or Inf, naming the count and the first offending example."""
    import numpy as np

    from dlcli.data.example_stream import ExampleStream

    if isinstance(array, ExampleStream):
        return  # image files decode to uint8; windows' rows were refused non-finite when read
    if not np.issubdtype(getattr(array, "dtype", np.float64), np.floating):
        return  # whole numbers
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name} has {int(bad.sum())} example(s) with NaN or Inf values; "
            f"the first is index {int(np.argmax(bad))}"
        )


Loaded = tuple[Split, Split | None, Split | None, DatasetInfo]  # train, validation, test
