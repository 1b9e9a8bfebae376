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

from dlcli.data.common import DatasetInfo, Split, resolve_path
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
    folders = {
        split: resolve_path(folder, base_dir)
        for split, folder in (
            ("train", source.train),
            ("validation", source.validation),
            ("test", source.test),
        )
        if folder is not None
    }
    files = {split: _class_files(folder) for split, folder in folders.items()}
    class_names = sorted(files["train"])
    for split, classes in files.items():
        if sorted(classes) != class_names:
            raise DataError(
                f"{folders[split]}: its class folders {_names(sorted(classes))} differ from those "
                f"of the training folder {folders['train']}: {_names(class_names)}"
            )
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


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its .txt files (sorted, hidden ones left out) for one dataset folder."""
    if not folder.is_dir():
        raise DataError(f"text folder not found: {folder}")
    classes = {
        entry.name: sorted(
            path
            for path in entry.rglob(f"*{TEXT_SUFFIX}")
            if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(entry).parts)
        )
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    }
    if len(classes) < 2:
        raise DataError(
            f"{folder}: found {len(classes)} class folder(s) {_names(sorted(classes))}; "
            f"expected one subfolder of {TEXT_SUFFIX} files per class, at least two"
        )
    for name, paths in sorted(classes.items()):
        if not paths:
            raise DataError(
                f"{folder / name}: the class folder `{name}` holds no {TEXT_SUFFIX} files"
            )
    return classes


def _names(names: list[str]) -> str:
    """`a`, `b`, `c` (the first ten, then how many more)."""
    shown = ", ".join(f"`{name}`" for name in names[:10])
    return f"({shown}, and {len(names) - 10} more)" if len(names) > 10 else f"({shown})"
