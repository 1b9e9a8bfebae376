"""Spec.dataset -> Splits (numpy arrays) + DatasetInfo, checked before training.

numpy is imported inside the functions that use it: `dlcli validate` imports this module for
`check_files`, and numpy would add about a third to its start-up.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlcli.errors import DataError
from dlcli.spec import DatasetSpec

if TYPE_CHECKING:
    import numpy as np

Polarity = Literal["light_on_dark", "dark_on_light"]


@dataclass(frozen=True)
class ImageInfo:
    """How the training images look, so that predict can make new images look the same."""

    height: int
    width: int
    channels: int
    polarity: Polarity | None = None
    framing: Literal["mnist"] | None = None  # digits fitted in 20x20, centred by mass in 28x28


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class DatasetInfo:
    source: str
    class_names: list[str] | None = None
    image: ImageInfo | None = None
    feature_names: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    skipped: int = 0  # unreadable files left out (image folders with skip_bad)


@dataclass(frozen=True)
class Splits:
    train: Split
    test: Split
    validation: Split | None = None
    test_is_train: bool = False  # the source has no test data: evaluated on the training data
    info: DatasetInfo = field(default_factory=lambda: DatasetInfo(source=""))


def cache_dir() -> Path:
    """Where downloaded datasets are kept: $DLCLI_CACHE, else $XDG_CACHE_HOME/dlcli."""
    if os.environ.get("DLCLI_CACHE"):
        return Path(os.environ["DLCLI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlcli"


def resolve_path(path: str, base_dir: Path) -> Path:
    """A path written in a spec: relative to the spec's folder unless absolute; `~` expanded."""
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base_dir / resolved


def check_files(spec: DatasetSpec, base_dir: Path, spec_file: Path | None = None) -> None:
    """Refuse a spec whose data files or image folders do not exist, before anything is read.

    Args:
        spec: the spec's `dataset`; a Keras dataset (`name`) or `inline` data has no files.
        base_dir: the spec's folder, which relative paths are relative to.
        spec_file: the spec file, named in the message.

    Raises:
        DataError: for the first missing file or folder: its absolute path and the spec key
            that names it.

    Example:

    >>> from dlcli.spec import DatasetSpec
    >>> dataset = DatasetSpec(csv={"train": "train.csv"})
    >>> check_files(dataset, Path("/nowhere"), Path("configs/x.yaml"))
    Traceback (most recent call last):
    ...
    dlcli.errors.DataError: dataset file not found: /nowhere/train.csv (dataset.csv.train in configs/x.yaml)
    """  # noqa: E501
    named: list[tuple[str, str | None, bool]] = []  # key path, path, whether it is a folder
    if spec.npz is not None:
        named.append(("dataset.npz", spec.npz.path, False))
    for kind, source in (("csv", spec.csv), ("images", spec.images)):
        for split in ("train", "validation", "test") if source is not None else ():
            named.append((f"dataset.{kind}.{split}", getattr(source, split), kind == "images"))
    for key, path, is_folder in named:
        if path is None:
            continue
        resolved = Path(os.path.abspath(resolve_path(path, base_dir)))
        if resolved.is_dir() if is_folder else resolved.is_file():
            continue
        where = key if spec_file is None else f"{key} in {spec_file}"
        what = "folder" if is_folder else "file"
        raise DataError(f"dataset {what} not found: {resolved} ({where})")


def digest(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes; names the data a model was trained on."""
    import numpy as np

    hasher = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()


def _split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out the last `fraction` of a shuffled copy (Keras's validation_split takes the tail)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(split))
    cut = len(split) - int(round(len(split) * fraction))
    if cut <= 0 or cut >= len(split):
        raise DataError(
            f"a split of {fraction} leaves no data on one side ({len(split)} examples in total)"
        )
    keep, held = order[:cut], order[cut:]
    return Split(split.x[keep], split.y[keep]), Split(split.x[held], split.y[held])


def load_dataset(spec: DatasetSpec, base_dir: Path, seed: int, *, skip_bad: bool = False) -> Splits:
    """Load the dataset a spec names; relative paths are relative to `base_dir` (the spec's).

    `skip_bad` leaves out image files that cannot be decoded instead of refusing the dataset.
    """
    if spec.name:
        from dlcli.data.keras_datasets import load

        train, validation, test, info = load(spec)
    elif spec.npz:
        from dlcli.data.files import load_npz

        train, validation, test, info = load_npz(spec.npz, base_dir)
    elif spec.csv:
        from dlcli.data.tables import load_csv

        train, validation, test, info = load_csv(spec.csv, base_dir)
    elif spec.images:
        from dlcli.data.images import load_images

        train, validation, test, info = load_images(spec.images, base_dir, skip_bad=skip_bad)
    else:
        from dlcli.data.files import load_inline

        assert spec.inline is not None
        train, validation, test, info = load_inline(spec.inline)
    test_is_train = False
    if test is None and spec.test_split:
        train, test = _split_off(train, spec.test_split, seed)
    if validation is None and spec.validation_split:
        train, validation = _split_off(train, spec.validation_split, seed + 1)
    if test is None:
        test, test_is_train = train, True
    sizes = {"train": len(train), "test": 0 if test_is_train else len(test)}
    if validation is not None:
        sizes["validation"] = len(validation)
    arrays = [train.x, train.y, test.x, test.y]
    info = DatasetInfo(
        source=info.source,
        class_names=info.class_names,
        image=info.image,
        feature_names=info.feature_names,
        sizes=sizes,
        digest=digest(*arrays),
        skipped=info.skipped,
    )
    return Splits(train, test, validation, test_is_train, info)


def check_finite(name: str, array: Any) -> None:
    """Refuse NaN or Inf, naming the count and the first offending example."""
    import numpy as np

    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name} has {int(bad.sum())} example(s) with NaN or Inf values; "
            f"the first is index {int(np.argmax(bad))}"
        )
