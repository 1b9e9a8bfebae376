"""Spec.dataset -> Splits (numpy arrays) + DatasetInfo, checked before training."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlcli.errors import DataError
from dlcli.spec import DatasetSpec

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
    import os

    if os.environ.get("DLCLI_CACHE"):
        return Path(os.environ["DLCLI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlcli"


def digest(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' shapes, dtypes and bytes; names the data a model was trained on."""
    hasher = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()


def _split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out the last `fraction` of a shuffled copy (Keras's validation_split takes the tail)."""
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
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"{name} has {int(bad.sum())} example(s) with NaN or Inf values; "
            f"the first is index {int(np.argmax(bad))}"
        )
