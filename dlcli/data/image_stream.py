"""Image files as the examples of a split, decoded a batch at a time, never all at once.

`ImageFiles` stands where a split's array of pixels would (an `ExampleStream`: a file's index
is its key). Its pixels come from `decode`, which reads the files of a batch on a pool of
threads with `dlcli.data.decode` (`read_image`, the thread-safe `open_image`, then
`to_array(raw=True)`), the code `dlcli predict` uses. `scan` reads every file once before
training: the bytes' sha256 (the dataset's digest) and the header (or, with `decode`, the
whole image).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dlcli.data.common import ImageInfo
from dlcli.data.decode import check_header, read_image, to_array
from dlcli.data.example_stream import ExampleStream
from dlcli.errors import DataError, InputError

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def decoding_pool() -> ThreadPoolExecutor:
    """The threads that decode images: one per CPU core (PIL releases the GIL as it decodes)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="dlcli-decode")
        return _POOL


def decode_files(paths: Sequence[str] | np.ndarray, info: ImageInfo) -> np.ndarray:
    """The images at `paths` as one uint8 array (len(paths), height, width, channels).

    Raises:
        InputError: the first file (in `paths` order) that cannot be decoded.
    """
    pixels = np.empty((len(paths), info.height, info.width, info.channels), dtype=np.uint8)

    def one(slot: int) -> None:
        pixels[slot] = to_array(read_image(Path(paths[slot])), info, raw=True)

    for _ in decoding_pool().map(one, range(len(paths))):
        pass
    return pixels


def scan(
    paths: Sequence[str] | np.ndarray,
    info: ImageInfo,
    *,
    decode: bool,
    into: np.ndarray | None = None,
) -> tuple[list[bytes], list[str]]:
    """Each file's sha256 (empty for a file that cannot be read) and a message for each problem.

    The header of every file is checked (`check_header`); with `decode` each image is decoded
    too, which finds truncated or corrupt data that a header does not show, and stored at its
    row of `into` when given.
    """

    def one(slot: int) -> tuple[bytes, str | None]:
        path = paths[slot]
        try:
            with open(path, "rb") as file:
                data = file.read()
            check_header(Path(path), data)
            if decode:
                pixels = to_array(read_image(Path(path)), info, raw=True)
                if into is not None:
                    into[slot] = pixels
        except OSError as error:
            return b"", f"{path}: cannot read the file ({error.strerror})"
        except InputError as error:
            return b"", str(error)
        return hashlib.sha256(data).digest(), None

    found = list(decoding_pool().map(one, range(len(paths)), chunksize=64))
    return [digest for digest, _ in found], [problem for _, problem in found if problem]


class ImageFiles(ExampleStream):
    """The examples of a split as image files, decoded when a batch of them is needed.

    Args:
        paths: the files, one per example.
        info: the size and channels every image is decoded to.
        digests: each file's sha256, in the order of `paths`.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: np.ndarray, info: ImageInfo, digests: np.ndarray) -> None:
        self.paths = paths
        self.info = info
        self.digests = digests
        self.failure: InputError | None = None  # the first file a batch could not decode

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def keys(self) -> np.ndarray:
        return np.arange(len(self), dtype=np.int64)

    def __getitem__(self, index: Any) -> ImageFiles:
        return ImageFiles(self.paths[index], self.info, self.digests[index])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.info.height, self.info.width, self.info.channels)

    def content_digest(self) -> bytes:
        """The sha256 of the files' contents, in order."""
        return hashlib.sha256(b"".join(self.digests.tolist())).digest()

    def decode(self, indices: np.ndarray) -> np.ndarray:
        """The images at `indices`, as uint8 pixels; a file that cannot be decoded is kept in
        `failure` (training stops on it with that file's name) and raised."""
        try:
            return decode_files(self.paths[np.asarray(indices).reshape(-1)], self.info).reshape(
                (*np.shape(indices), *self.shape[1:])
            )
        except InputError as error:
            self.failure = self.failure or error
            raise

    def decoded(self) -> Callable[[Any], Any]:
        """Indices into their images, decoded on the pool of threads (`decode`)."""
        import tensorflow as tf

        def decoded(indices: Any) -> Any:
            pixels = tf.numpy_function(self.decode, [indices], tf.uint8, stateful=False)
            pixels.set_shape(indices.shape.concatenate(self.shape[1:]))
            return pixels

        return decoded


def first_failure(*examples: Any) -> DataError | None:
    """The file a training stream could not decode, as the error that ends training."""
    for x in examples:
        if isinstance(x, ImageFiles) and x.failure is not None:
            return DataError(
                f"{x.failure}; found while training (`--skip-bad` decodes every image before "
                "training and leaves such files out)"
            )
    return None
