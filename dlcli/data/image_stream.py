"""Image files as the examples of a split, decoded a batch at a time, never all at once.

`ImageFiles` stands where a split's array of pixels would: it has the array's length, shape
and dtype, and indexing it picks files, so splitting off validation and test data works on it
as on arrays. Its pixels come from `decode`, which reads the files of a batch on a pool of
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


class ImageFiles:
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

    def __getitem__(self, index: Any) -> ImageFiles:
        return ImageFiles(self.paths[index], self.info, self.digests[index])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.info.height, self.info.width, self.info.channels)

    @property
    def nbytes(self) -> int:
        """The bytes the decoded images would take."""
        return int(np.prod(self.shape))

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

    def decoded_map(self, positions: Sequence[int]) -> Callable[..., tuple[Any, ...]]:
        """A tf.data map function: the index tensors at `positions` of its arguments replaced
        by their images (the other arguments pass through)."""
        import tensorflow as tf

        def decoded(indices: Any) -> Any:
            pixels = tf.numpy_function(self.decode, [indices], tf.uint8, stateful=False)
            pixels.set_shape(indices.shape.concatenate(self.shape[1:]))
            return pixels

        def mapped(*parts: Any) -> tuple[Any, ...]:
            return tuple(decoded(p) if i in positions else p for i, p in enumerate(parts))

        return mapped

    def batches(self, batch_size: int, *labels: Any, strategy: Any = None) -> Any:
        """A tf.data pipeline of the images in order, `batch_size` at a time, with `labels`
        (arrays of one row per example, batched alongside), decoded one batch ahead.

        With a `strategy` of several replicas, a distributed dataset of the same batches, of
        which each worker decodes only its replicas' share (`replica_batches`).
        """
        import tensorflow as tf

        mapped = self.decoded_map([0])
        indices = np.arange(len(self), dtype=np.int64)
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            in_order = tf.data.Dataset.from_tensor_slices((indices, *labels)).batch(batch_size)
            return strategy.distribute_datasets_from_function(
                lambda context: replica_batches(in_order, self, context)
            )
        if labels:
            dataset = tf.data.Dataset.from_tensor_slices((indices, *labels)).batch(batch_size)
            return dataset.map(mapped).prefetch(2)
        dataset = tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)
        return dataset.map(lambda batch: mapped(batch)[0]).prefetch(2)


def replica_batches(global_batches: Any, files: ImageFiles, context: Any) -> Any:
    """One worker's share of image files batched for several replicas, decoded: what
    `strategy.distribute_datasets_from_function` asks of each worker's input pipeline.

    `global_batches` is a tf.data pipeline of (indices into `files`, *labels) batches, the
    batches one process would train on. Each is cut into `context.num_replicas_in_sync`
    consecutive pieces, as even as can be (a partial batch's first pieces one row longer, as
    numpy's `array_split` cuts), and piece p goes to the pipeline p % pipelines, for its local
    replica p // pipelines: the order in which Keras's `predict` puts the replicas' outputs
    back together. Only then are files decoded, so each worker decodes its own rows alone, and
    the workers' shares together are each global batch.

    The sharding is by file, within each batch, and by hand: tf.data's auto-sharding is off
    (`distribute_datasets_from_function` leaves what it is given as it is). Its FILE policy
    divides the files a dataset reads with tf.data's readers (these are indices, read by
    `decode`) and would give each worker batches of its own, not parts of the batches one
    process trains on; its DATA policy, where AUTO falls back to, has each worker decode every
    batch whole and keep its part.

    Args:
        global_batches: batches of (indices, *labels), the same on every worker.
        files: the image files the indices pick.
        context: this pipeline's `tf.distribute.InputContext`.

    Returns:
        A tf.data pipeline of per-replica batches (pixels, *labels), this worker's local
        replicas' pieces of each global batch in turn.
    """
    import tensorflow as tf

    pipelines, pipeline = context.num_input_pipelines, context.input_pipeline_id
    replicas = context.num_replicas_in_sync
    local_replicas = replicas // pipelines

    def pieces(*batch: Any) -> Any:
        rows = tf.shape(batch[0], out_type=tf.int64)[0]
        each, longer = rows // replicas, rows % replicas

        def piece(local_replica: Any) -> tuple[Any, ...]:
            index = local_replica * pipelines + pipeline
            start = index * each + tf.minimum(index, longer)
            end = start + each + tf.cast(index < longer, tf.int64)
            return tuple(part[start:end] for part in batch)

        return tf.data.Dataset.range(local_replicas).map(piece)

    shares = global_batches.flat_map(pieces)
    if (steps := int(global_batches.cardinality())) >= 0:  # Keras counts a finite pass's steps
        shares = shares.apply(tf.data.experimental.assert_cardinality(steps * local_replicas))
    return shares.map(files.decoded_map([0])).prefetch(2 * local_replicas)  # a batch ahead


def first_failure(*examples: Any) -> DataError | None:
    """The file a training stream could not decode, as the error that ends training."""
    for x in examples:
        if isinstance(x, ImageFiles) and x.failure is not None:
            return DataError(
                f"{x.failure}; found while training (`--skip-bad` decodes every image before "
                "training and leaves such files out)"
            )
    return None
