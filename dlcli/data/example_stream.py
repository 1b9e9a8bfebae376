"""Examples that stand where a split's array would, made a batch at a time, never all at once.

An `ExampleStream` has the array's length, shape, dtype and ndim, and indexing it (on the
first axis) picks examples, so splitting off validation and test data works on it as on
arrays. A tf.data pipeline carries one key per example (`keys`) in its place; `decoded_map`
turns the keys into the examples inside the pipeline, and `decode` gives examples in memory.
Image files (`dlcli.data.image_stream.ImageFiles`: a file's index, decoded into its pixels)
and time windows (`dlcli.data.time_windows.Windows`: a window's first row, gathered into its
rows) are the two kinds. Training (`dlcli.train.loop`), scoring (`dlcli.model.scoring`) and
the checks treat them alike through this class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


class ExampleStream(ABC):
    """The examples of a split, made from their keys when a batch of them is needed.

    A subclass gives `__len__`, `keys`, `shape`, `decode`, `decoded` and `__getitem__`, and says
    whether `decoded` is TensorFlow ops alone (`in_graph`): then a compiled program can make
    its examples itself (`dlcli.train.loop.fit_epochs_at_once`).
    """

    dtype: np.dtype[Any]
    ndim: int
    in_graph: bool = False

    @property
    @abstractmethod
    def keys(self) -> np.ndarray:
        """One key per example, what a tf.data pipeline carries in its place."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of the array the examples would make: (examples, *one example's)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: Any) -> ExampleStream:
        """The examples at `index` (a numpy index of the first axis), as a stream."""

    @property
    def nbytes(self) -> int:
        """The bytes the examples would take in memory, all at once."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @abstractmethod
    def decode(self, positions: np.ndarray) -> np.ndarray:
        """The examples at `positions` (indices into this stream), in memory."""

    @abstractmethod
    def decoded(self) -> Callable[[Any], Any]:
        """A function from a tensor of keys, of any shape, to the tensor of their examples."""

    def decoded_map(self, positions: Sequence[int]) -> Callable[..., tuple[Any, ...]]:
        """A tf.data map function: the key tensors at `positions` of its arguments replaced by
        their examples (the other arguments pass through)."""
        decoded = self.decoded()

        def mapped(*parts: Any) -> tuple[Any, ...]:
            return tuple(decoded(p) if i in positions else p for i, p in enumerate(parts))

        return mapped

    def batches(self, batch_size: int, *labels: Any, strategy: Any = None) -> Any:
        """A tf.data pipeline of the examples in order, `batch_size` at a time, with `labels`
        (arrays of one row per example, batched alongside), made one batch ahead.

        With a `strategy` of several replicas, a distributed dataset of the same batches, of
        which each worker makes only its replicas' share (`replica_batches`).
        """
        import tensorflow as tf

        mapped = self.decoded_map([0])
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            in_order = tf.data.Dataset.from_tensor_slices((self.keys, *labels)).batch(batch_size)
            return strategy.distribute_datasets_from_function(
                lambda context: replica_batches(in_order, self, context)
            )
        if labels:
            dataset = tf.data.Dataset.from_tensor_slices((self.keys, *labels)).batch(batch_size)
            return dataset.map(mapped).prefetch(2)
        dataset = tf.data.Dataset.from_tensor_slices(self.keys).batch(batch_size)
        return dataset.map(lambda batch: mapped(batch)[0]).prefetch(2)

    def chunks(self, chunk_bytes: int) -> Iterator[np.ndarray]:
        """The examples in order, about `chunk_bytes` at a time (at least one example), in
        memory one chunk at a time."""
        example_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        examples = max(1, chunk_bytes // max(example_bytes, 1))
        for first in range(0, len(self), examples):
            yield self.decode(np.arange(first, min(first + examples, len(self))))


def replica_batches(global_batches: Any, stream: ExampleStream, context: Any) -> Any:
    """One worker's share of a stream's examples batched for several replicas, decoded: what
    `strategy.distribute_datasets_from_function` asks of each worker's input pipeline.

    `global_batches` is a tf.data pipeline of (keys of `stream`, *labels) batches, the
    batches one process would train on. Each is cut into `context.num_replicas_in_sync`
    consecutive pieces, as even as can be (a partial batch's first pieces one row longer, as
    numpy's `array_split` cuts), and piece p goes to the pipeline p % pipelines, for its local
    replica p // pipelines: the order in which Keras's `predict` puts the replicas' outputs
    back together. Only then are examples decoded (image files, windows gathered), so each
    worker decodes its own rows alone, and the workers' shares together are each global batch.

    The sharding is by example, within each batch, and by hand: tf.data's auto-sharding is off
    (`distribute_datasets_from_function` leaves what it is given as it is). Its FILE policy
    divides the files a dataset reads with tf.data's readers (these are keys, read by
    `decode`) and would give each worker batches of its own, not parts of the batches one
    process trains on; its DATA policy, where AUTO falls back to, has each worker decode every
    batch whole and keep its part.

    Args:
        global_batches: batches of (keys, *labels), the same on every worker.
        stream: the examples the keys stand for.
        context: this pipeline's `tf.distribute.InputContext`.

    Returns:
        A tf.data pipeline of per-replica batches (examples, *labels), this worker's local
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
    return shares.map(stream.decoded_map([0])).prefetch(2 * local_replicas)  # a batch ahead
