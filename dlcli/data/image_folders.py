"""Image folders: one subfolder per class, decoded by the same code as `dlcli predict`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.common import DatasetInfo, ImageInfo, Polarity, Split, class_folders
from dlcli.data.decode import estimate_polarity
from dlcli.data.image_cache import disk_pixels
from dlcli.data.image_stream import ImageFiles, scan
from dlcli.errors import DataError
from dlcli.spec.schema import ImageCache, ImagesSource

CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
POLARITY_SAMPLE = 256  # training images looked at to tell the polarity
POLARITY_AGREEMENT = 0.9  # the share of them that must agree on it
POLARITIES: tuple[Polarity, ...] = ("light_on_dark", "dark_on_light")
# Unless `dataset.images.cache` says otherwise, the decoded images are held in memory when they
# take at most this share of the physical memory, and decoded again each epoch when larger.
MEMORY_FRACTION = 0.1


def load_images(
    source: ImagesSource, base_dir: Path, *, skip_bad: bool = False, stream: bool = False
) -> tuple[Split, Split | None, Split | None, DatasetInfo]:
    """Train, validation and test images from class folders, and what the images look like.

    Each of `source.train`, `.validation` and `.test` (relative to `base_dir`) holds one
    subfolder per class, with the same class names in each; the files in a class folder (and
    its subfolders) are its images, hidden files and folders left out. Every file is decoded
    with `dlcli.data.decode.open_image` and `to_array(raw=True)` at `image_size` in `color_mode`,
    so that `dlcli predict` reads images exactly as training did. y holds int64 indices into
    the sorted class names. For grayscale images the polarity of the training images (light on
    dark or dark on light) is recorded when it is clear, so that predict can match it. The
    dataset's digest is that of the files' bytes, whatever the cache.

    With `stream` (training) and `source.cache` `none`, or unset and the decoded images over
    `MEMORY_FRACTION` of the physical memory, each split's x is `ImageFiles`: the files are
    read once for their digest and headers (with `skip_bad`, decoded too), and decoded again
    a batch at a time while training. With `disk`, x is a read-only memory map of the decoded
    pixels in dlcli's cache folder (`dlcli.data.image_cache`; held in memory instead, with
    `skip_bad`, when some files cannot be decoded). Otherwise (`memory`) x holds the decoded
    pixels.

    Raises:
        DataError: a folder is missing, has fewer than two classes, an empty class, or class
            names that differ from the training folder's; or files cannot be read (all are
            tried first; the message counts them and names the first). With `skip_bad`,
            unreadable files are left out instead and counted in `info.skipped`.
    """
    height, width = source.image_size
    image_info = ImageInfo(height, width, CHANNELS[source.color_mode])
    splits_given = {"train": source.train, "validation": source.validation, "test": source.test}
    folders, files, class_names = class_folders(splits_given, base_dir, "image")
    paths = np.array(
        [str(p) for split in files for name in class_names for p in files[split][name]],
        dtype=object,
    )
    labels = np.array(
        [i for split in files for i, name in enumerate(class_names) for _ in files[split][name]],
        dtype=np.int64,
    )
    streamed = stream or source.cache == "disk"  # evaluate reads a disk cache too
    cache = resolved_cache(source.cache, len(paths), image_info) if streamed else "memory"
    pixels: np.ndarray | None = None
    if cache == "disk":
        pixels, digests, problems = disk_pixels(paths, labels, image_info)
    if cache == "memory" or (cache == "disk" and pixels is None and skip_bad):
        # with --skip-bad, a folder that cannot be cached whole is held in memory
        pixels = np.empty((len(paths), height, width, image_info.channels), dtype=np.uint8)
        digests, problems = scan(paths, image_info, decode=True, into=pixels)
    elif cache == "none":
        digests, problems = scan(paths, image_info, decode=skip_bad)
    if problems and not skip_bad:
        raise DataError(
            f"{len(problems)} of {len(paths)} image files cannot be read; the first: {problems[0]}"
        )
    readable = np.array([bool(digest) for digest in digests])
    all_digests = np.array(digests, dtype=object)
    splits: dict[str, Split] = {}
    start = 0
    for split, classes in files.items():
        end = start + sum(len(found) for found in classes.values())
        kept: Any = np.flatnonzero(readable[start:end]) + start
        if not len(kept):
            raise DataError(f"{folders[split]}: none of its image files can be read")
        if len(kept) == end - start:
            kept = slice(start, end)  # all of them: the pixels as a view, not a copy
        x: Any = (
            ImageFiles(paths[kept], image_info, all_digests[kept])
            if pixels is None
            else pixels[kept]
        )
        splits[split] = Split(x, labels[kept])
        start = end
    polarity = _polarity(splits["train"].x) if image_info.channels == 1 else None
    info = DatasetInfo(
        source=source.train,
        class_names=class_names,
        image=ImageInfo(height, width, image_info.channels, polarity),
        skipped=len(problems),
        digest=hashlib.sha256(
            b"".join(d + f"{label}\n".encode() for d, label in zip(digests, labels, strict=True))
        ).hexdigest(),
    )
    return splits["train"], splits.get("validation"), splits.get("test"), info


def resolved_cache(chosen: ImageCache | None, count: int, image_info: ImageInfo) -> ImageCache:
    """`chosen`, or when unset: memory if `count` decoded images take at most `MEMORY_FRACTION`
    of the physical memory (or of the container's limit), else none."""
    if chosen is not None:
        return chosen
    size = count * image_info.height * image_info.width * image_info.channels
    return "memory" if size <= MEMORY_FRACTION * physical_memory() else "none"


def physical_memory() -> int:
    """The machine's memory in bytes, or the cgroup's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def _polarity(images: np.ndarray | ImageFiles) -> Polarity | None:
    """The polarity that nearly all of an evenly spread sample of grayscale images share."""
    chosen = np.arange(0, len(images), max(1, len(images) // POLARITY_SAMPLE))[:POLARITY_SAMPLE]
    sample = images.decode(chosen) if isinstance(images, ImageFiles) else images[chosen]
    found = [estimate_polarity(image[..., 0]) for image in sample]
    for polarity in POLARITIES:
        if found.count(polarity) >= POLARITY_AGREEMENT * len(found):
            return polarity
    return None
