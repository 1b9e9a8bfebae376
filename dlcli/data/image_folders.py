"""Image folders: one subfolder per class, decoded by the same code as `dlcli predict`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.data.common import DatasetInfo, ImageInfo, Polarity, Split, resolve_path
from dlcli.data.decode import estimate_polarity, open_image, to_array
from dlcli.errors import DataError, InputError
from dlcli.spec.schema import ImagesSource

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
POLARITY_SAMPLE = 256  # training images looked at to tell the polarity
POLARITY_AGREEMENT = 0.9  # the share of them that must agree on it
POLARITIES: tuple[Polarity, ...] = ("light_on_dark", "dark_on_light")


def load_images(
    source: ImagesSource, base_dir: Path, *, skip_bad: bool = False
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test images from class folders, and what the images look like.

    Each of `source.train`, `.validation` and `.test` (relative to `base_dir`) holds one
    subfolder per class, with the same class names in each; the files in a class folder (and
    its subfolders) are its images, hidden files and folders left out. Every file is decoded
    with `dlcli.data.decode.open_image` and `to_array(raw=True)` at `image_size` in `color_mode`,
    so that `dlcli predict` reads images exactly as training did. y holds int64 indices into
    the sorted class names. For grayscale images the polarity of the training images (light on
    dark or dark on light) is recorded when it is clear, so that predict can match it.

    Raises:
        DataError: a folder is missing, has fewer than two classes, an empty class, or class
            names that differ from the training folder's; or files cannot be decoded (all are
            tried first; the message counts them and names the first). With `skip_bad`,
            undecodable files are left out instead and counted in `info.skipped`.
    """
    height, width = source.image_size
    image_info = ImageInfo(height, width, CHANNELS[source.color_mode])
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
    decoded, problems = _decode(files, class_names, image_info)
    if problems:
        total = sum(len(paths) for classes in files.values() for paths in classes.values())
        message = f"{len(problems)} of {total} image files cannot be read; the first: {problems[0]}"
        if not skip_bad:
            raise DataError(message)
    splits: dict[str, Split] = {}
    for split, (images, indices) in decoded.items():
        if not images:
            raise DataError(f"{folders[split]}: none of its image files can be read")
        splits[split] = Split(np.stack(images), np.array(indices, dtype=np.int64))
    polarity = _polarity(splits["train"].x) if image_info.channels == 1 else None
    info = DatasetInfo(
        source=source.train,
        class_names=class_names,
        image=ImageInfo(height, width, image_info.channels, polarity),
        skipped=len(problems),
    )
    return splits["train"], splits.get("validation"), splits.get("test"), info


def _decode(
    files: dict[str, dict[str, list[Path]]], class_names: list[str], image_info: ImageInfo
) -> tuple[dict[str, tuple[list[np.ndarray], list[int]]], list[str]]:
    """Each split's decoded pixels and class indices, and a message for each unreadable file."""
    decoded: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    problems: list[str] = []
    for split, classes in files.items():
        pixels: list[np.ndarray] = []
        labels: list[int] = []
        decoded[split] = (pixels, labels)
        for index, name in enumerate(class_names):
            for path in classes[name]:
                try:
                    pixels.append(to_array(open_image(path), image_info, raw=True))
                except InputError as error:
                    problems.append(str(error))
                    continue
                labels.append(index)
    return decoded, problems


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted, hidden ones left out) for one dataset folder."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    classes = {
        entry.name: sorted(
            path
            for path in entry.rglob("*")
            if path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(entry).parts)
        )
        for entry in folder.iterdir()
        if entry.is_dir() and not entry.name.startswith(".")
    }
    if len(classes) < 2:
        raise DataError(
            f"{folder}: found {len(classes)} class folder(s) {_names(sorted(classes))}; "
            "expected one subfolder of images per class, at least two"
        )
    for name, paths in sorted(classes.items()):
        if not paths:
            raise DataError(f"{folder / name}: the class folder `{name}` holds no image files")
    return classes


def _names(names: list[str]) -> str:
    """`a`, `b`, `c` (the first ten, then how many more)."""
    shown = ", ".join(f"`{name}`" for name in names[:10])
    return f"({shown}, and {len(names) - 10} more)" if len(names) > 10 else f"({shown})"


def _polarity(images: np.ndarray) -> Polarity | None:
    """The polarity that nearly all of an evenly spread sample of grayscale images share."""
    sample = images[:: max(1, len(images) // POLARITY_SAMPLE)][:POLARITY_SAMPLE]
    found = [estimate_polarity(image[..., 0]) for image in sample]
    for polarity in POLARITIES:
        if found.count(polarity) >= POLARITY_AGREEMENT * len(found):
            return polarity
    return None
