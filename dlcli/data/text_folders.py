"""Text folders: one subfolder per class, its `.txt` files the examples.

The layout `keras.utils.text_dataset_from_directory` reads (class names are the sorted
subfolder names; a class folder's `.txt` files, in its subfolders too, are its examples), read
here as UTF-8 into arrays so that the training split adapts the model's TextVectorization and
every split is encoded by it (`dlcli.model.feature_space`). The examples are one text column,
`TEXT_COLUMN`: the saved model takes the raw text under that name, and `dlcli predict` reads a
.txt file into it with `read_text`, the same code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dlcli.data.common import DatasetInfo, Split, class_folders
from dlcli.data.csv_tables import Missing
from dlcli.errors import DataError, DlcliError
from dlcli.spec.columns import TEXT
from dlcli.spec.schema import TextFoldersSource

TEXT_COLUMN = TEXT  # the name of the saved model's one input
TEXT_SUFFIX = ".txt"  # the files text_dataset_from_directory reads


def read_text(
    path: Path | str, error: type[DlcliError] = DataError, data: bytes | None = None
) -> str:
    """The text of one file (or of `data`, its bytes), UTF-8 with or without a byte order mark.

    Raises:
        `error` (DataError by default): the file cannot be read, or is not UTF-8 text.

    Example:
        read_text(Path("review.txt"))
    """
    try:
        if data is None:
            data = Path(path).read_bytes()
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        raise error(
            f"{path}: not UTF-8 text ({problem.reason} at byte {problem.start}); save it as UTF-8"
        ) from None
    except OSError as problem:
        raise error(f"{path}: cannot read the file ({problem.strerror})") from None


def load_text_folders(
    source: TextFoldersSource, base_dir: Path
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test texts from class folders (paths relative to `base_dir`).

    Each of `source.train`, `.validation` and `.test` holds one subfolder per class, with the
    same class names in each; x maps `TEXT_COLUMN` to the texts (an object array of str, each
    stripped of surrounding whitespace, as `dlcli predict` strips a .txt file's), y
    holds int64 indices into the sorted class names. The digest is that of the files' bytes
    and classes.

    Raises:
        DataError: one line: a folder is missing, has fewer than two class folders, a class
            folder holds no .txt file, class names differ from the training folder's, or a
            file is not UTF-8 text (naming the file).
    """
    splits_given = {"train": source.train, "validation": source.validation, "test": source.test}
    _, files, class_names = class_folders(splits_given, base_dir, "text", TEXT_SUFFIX)
    hasher = hashlib.sha256()
    splits: dict[str, Split] = {}
    for split, classes in files.items():
        paths = [path for name in class_names for path in classes[name]]
        labels = [index for index, name in enumerate(class_names) for _ in classes[name]]
        texts = np.empty(len(paths), dtype=object)
        for slot, path in enumerate(paths):
            data = _read_bytes(path)
            texts[slot] = read_text(path, data=data).strip()
            hasher.update(hashlib.sha256(data).digest() + f"{labels[slot]}\n".encode())
        splits[split] = Split({TEXT_COLUMN: texts}, np.array(labels, dtype=np.int64))
    info = DatasetInfo(
        source=source.train,
        class_names=class_names,
        column_kinds={TEXT_COLUMN: "text"},
        missing=Missing("mean"),  # no numeric column, so no cell to fill
        digest=hasher.hexdigest(),
    )
    return splits["train"], splits.get("validation"), splits.get("test"), info


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as problem:
        raise DataError(f"{path}: cannot read the file ({problem.strerror})") from None
