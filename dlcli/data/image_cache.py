"""Decoded images kept on disk between epochs and runs (`dataset.images.cache: disk`).

An image dataset's decoded pixels (uint8, one row per file, in the order the files are listed)
are one `.npy` file in dlcli's cache folder, `images/<key>.npy`, written the first time and
memory-mapped when read: an epoch reads them from the page cache or the disk instead of
decoding the files again, and the process holds only the pages it touches. The key is the
sha256 of every file's content digest, the class labels and the decoded size and channels,
so a changed file, a file moved to another class or another `image_size` makes another file.

The file is written through `dlcli.utils.atomic.replacing` (a temporary file beside it, flushed,
then renamed): a run killed while writing it leaves no file under the key, only the temporary
file, which the next run's write reuses. A folder with files that cannot be decoded is not
cached (the caller holds it in memory with `--skip-bad`, or stops).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from dlcli.data.common import ImageInfo
from dlcli.data.image_stream import scan
from dlcli.utils.atomic import replacing
from dlcli.utils.cache import cache_dir

# Part of every key: a change of what decoding gives for the same file must change this.
FORMAT = b"dlcli decoded images 1\n"


def disk_pixels(
    paths: np.ndarray, labels: np.ndarray, info: ImageInfo
) -> tuple[np.ndarray | None, list[bytes], list[str]]:
    """The decoded images of `paths`, memory-mapped from the cache file (written first when
    there is none): (pixels, each file's sha256, problems). Every file is read for its digest.

    Pixels are None when some files cannot be read: `problems` names each, and nothing was
    cached. `scan` gives the digests and problems as for images held in memory.

    Raises:
        OutputError: the cache folder cannot be written (dlcli.utils.atomic).
    """
    digests, problems = scan(paths, info, decode=False)
    if problems:
        return None, digests, problems
    shape = (len(paths), info.height, info.width, info.channels)
    path = cache_path(digests, labels, info)
    pixels = _read(path, shape)
    if pixels is not None:
        return pixels, digests, []
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path, suffix=".npy") as handle:
            written = np.lib.format.open_memmap(handle.name, mode="w+", dtype=np.uint8, shape=shape)
            digests, problems = scan(paths, info, decode=True, into=written)
            written.flush()
            del written  # unmapped before the file is moved into place
            if problems:  # found only by decoding (truncated data): the file is not kept
                raise _Undecodable(digests, problems)
    except _Undecodable as found:
        return None, found.digests, found.problems
    return _read(path, shape), digests, []


def cache_path(digests: list[bytes], labels: np.ndarray, info: ImageInfo) -> Path:
    """Where the decoded images of files with these contents and labels are kept.

    Example:
        >>> path = cache_path([b"\\x00" * 32], np.array([0]), ImageInfo(8, 8, 3))
        >>> path.parent.name, len(path.stem), path.suffix
        ('images', 64, '.npy')
    """
    key = hashlib.sha256(FORMAT)
    key.update(f"{info.height}x{info.width}x{info.channels}\n".encode())
    for digest, label in zip(digests, labels.tolist(), strict=True):
        key.update(digest + f"{label}\n".encode())
    return cache_dir() / "images" / f"{key.hexdigest()}.npy"


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cache file memory-mapped read-only; None when there is none, or it is not what the
    key promises (damaged on disk)."""
    try:
        pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):  # none yet, or cut short or overwritten since
        return None
    return pixels if pixels.shape == shape and pixels.dtype == np.uint8 else None


class _Undecodable(Exception):
    """Files whose headers read but whose data cannot be decoded: nothing is cached."""

    def __init__(self, digests: list[bytes], problems: list[str]) -> None:
        super().__init__(problems[0])
        self.digests, self.problems = digests, problems
