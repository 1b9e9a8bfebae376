"""How `fit` runs: steps per execution, and on one device each execution one compiled program
over Keras's own `train_step`, fed by a tf.data pipeline of stacked batches."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def steps_per_execution(setting: int | str, examples: int, batch_size: int) -> int:
    """Steps per call into TensorFlow: Python runs once per execution, not per batch.

    "auto" takes up to a fifth of the epoch's steps, at most 128 (progress, Ctrl-C and a NaN
    loss are handled between executions): the largest divisor of the full batches there when
    it is at least a quarter of that, so that the last execution is only the partial batch and
    its program traces one step, not two (see `training_data`).

    Example:
        >>> steps_per_execution("auto", 60000, 128), steps_per_execution(3, 60000, 128)
        (78, 3)
    """
    if setting != "auto":
        return int(setting)
    full, steps = examples // batch_size, math.ceil(examples / batch_size)
    limit = max(1, min(steps // 5, 128))
    divisor = max(d for d in range(1, limit + 1) if full % d == 0)
    return divisor if 4 * divisor >= limit else limit


# The decoded images of one execution (a stream of image files) take at most this much memory.
_DECODED_EXECUTION_BYTES = 64 * 1024 * 1024


def decoded_steps(files: Any, batch_size: int) -> int:
    """The most steps per execution whose decoded images fit `_DECODED_EXECUTION_BYTES`.

    Example:
        >>> from dlcli.data.common import ImageInfo
        >>> from dlcli.data.image_stream import ImageFiles
        >>> files = ImageFiles(np.array(["a.jpg"] * 1000), ImageInfo(128, 128, 3), np.array([b""]))
        >>> decoded_steps(files, 32)
        42
    """
    per_example = int(np.prod(files.shape[1:]))
    return max(1, _DECODED_EXECUTION_BYTES // (batch_size * per_example))


# Above this size the training data goes to Keras's own adapter, which holds no shuffled copy.
_SHUFFLED_COPY_MAX_BYTES = 512 * 1024 * 1024


def training_data(
    model: Any,
    x: Any,
    y: Any,
    batch_size: int,
    shuffle: bool,
    *,
    replicas: int,
    fused: bool = True,
    first_epoch: int = 0,
    weights: Any = None,
) -> dict[str, Any]:
    """`fit`'s data arguments; on one device, each execution runs as one compiled program.

    Keras's TensorFlow trainer runs an execution as a loop of compiled steps, one XLA program
    launched and one batch fetched per step, which costs a small MLP a large part of its epoch
    (benchmarks/ has the figures). Here the data comes as executions (see `executions`), and
    `model.train_function`, which `fit` calls once per execution, runs Keras's own `train_step`
    over all of its batches in one program. Keras still counts the steps, calls the callbacks
    and validates as it does with `steps_per_execution`.

    Several replicas, data that is not plain arrays, too much of it for a shuffled copy, or not
    `fused` (a Keras version the executions were not tested with): Keras's own adapter and loop.
    `weights`, one per example, are the sample weights of the loss and metrics. A model of
    several inputs takes x as a mapping by input name; one of several outputs takes y, and
    `weights`, as lists in the order of its outputs.
    """
    import keras

    from dlcli.data.image_stream import ImageFiles

    files = x if isinstance(x, ImageFiles) else None
    if files is not None:  # the files' indices stand for the images until they are decoded
        x = np.arange(len(files), dtype=np.int64)
    structure = (x, y) if weights is None else (x, y, weights)
    arrays = keras.tree.flatten(structure)  # x, y and weights may each be a list or mapping
    fits = all(isinstance(array, np.ndarray) for array in arrays)
    too_large = fits and sum(array.nbytes for array in arrays) > _SHUFFLED_COPY_MAX_BYTES
    if files is not None and (not fused or replicas > 1):
        return {
            "x": _epochs_of_batches(files, arrays, batch_size, shuffle, first_epoch),
            "steps_per_epoch": math.ceil(len(files) / batch_size),
            "shuffle": False,
        }
    if not fused or replicas > 1 or not fits or len(arrays[0]) == 0 or too_large:
        return {
            "x": x,
            "y": y,
            "batch_size": batch_size,
            "shuffle": shuffle,
            "sample_weight": weights,
        }
    import tensorflow as tf

    step = model.train_step

    def batch(parts: list[Any]) -> Any:  # (x, y[, weights]) as `train_step` takes them
        return keras.tree.pack_sequence_as(structure, parts)

    @tf.function(jit_compile=model.jit_compile, autograph=False)  # as Keras's own step
    def execution(*parts: Any) -> Any:
        stacked, rest = parts[: len(arrays)], parts[len(arrays) :]

        def one_step(index: Any) -> Any:
            step(batch([part[index] for part in stacked]))
            return index + 1

        if stacked[0].shape[0]:  # shapes are known: each is traced on its own
            count = stacked[0].shape[0]
            tf.while_loop(lambda i: i < count, one_step, [0], parallel_iterations=1)
        if rest[0].shape[0]:
            step(batch(list(rest)))
        return model.get_metrics_result()  # what `train_step` returns, after the last step

    model.train_function = lambda iterator: execution(*next(iterator))
    decoded = None if files is None else files.decoded_map([0, len(arrays)])
    dataset = executions(
        tuple(arrays), batch_size, shuffle, model.steps_per_execution, first_epoch, decoded
    )
    return {
        "x": dataset,
        "steps_per_epoch": math.ceil(len(arrays[0]) / batch_size),
        "shuffle": False,
    }


def executions(
    arrays: tuple[Any, ...],
    batch_size: int,
    shuffle: bool,
    per_execution: int,
    first_epoch: int = 0,
    decoded: Any = None,
) -> Any:
    """The training data as a tf.data pipeline of executions, all epochs through one iterator.

    `arrays` are those of x, y and perhaps sample weights, one row per example. An execution is, for
    each, `per_execution` full batches stacked, shape (steps, batch, ...), then the partial
    batch that ends the epoch (empty but in the last execution): the batches Keras makes, full
    ones then the rest. Each epoch is one gather of the arrays in a new order
    (Keras's adapter repeats the first order every epoch once a seed is set), gathered while the
    previous epoch trains. Epoch e's order depends on the run's seed and e alone, so a run
    resumed after `first_epoch` epochs sees the orders the uninterrupted run would have. Pixels
    stay uint8, 4x less to copy than float32; the model converts them.

    `decoded`, a tf.data map function, turns each execution's parts into what the step takes:
    for image files (`ImageFiles.decoded_map`), the files' indices into their images, decoded
    while the previous execution trains.
    """
    import tensorflow as tf

    count = len(arrays[0])
    full = count // batch_size
    executions = math.ceil(math.ceil(count / batch_size) / per_execution)
    stacked = (executions - 1) * per_execution  # the full batches of all executions but the last
    # The epoch number lives outside the iterator.
    with tf.device("/cpu:0"):
        epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    base_seed = tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)  # from the run's seed

    def all_but_last(array: Any) -> Any:  # (executions - 1, per_execution, batch, ...)
        shape = (executions - 1, per_execution, batch_size, *array.shape[1:])
        return tf.reshape(array[: stacked * batch_size], shape)

    def last(array: Any) -> Any:  # the last execution's full batches: (full - stacked, batch, ...)
        shape = (full - stacked, batch_size, *array.shape[1:])
        return tf.reshape(array[stacked * batch_size : full * batch_size], shape)

    @tf.autograph.experimental.do_not_convert  # plain Python: converting it only costs time
    def one_epoch(*parts: Any) -> Any:
        if shuffle:
            seed = tf.stack([base_seed, epoch.assign_add(1)])
            order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
            parts = tuple(tf.gather(part, order) for part in parts)
        no_rest = [tf.zeros((executions - 1, 0, *a.shape[1:]), a.dtype) for a in parts]
        rest = [part[full * batch_size :] for part in parts]
        return tf.data.Dataset.from_tensor_slices(
            (*map(all_but_last, parts), *no_rest)
        ).concatenate(tf.data.Dataset.from_tensors((*map(last, parts), *rest)))

    options = tf.data.Options()
    # As in Keras's adapter: no graph rewrites, which would serialize the arrays.
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    # Nothing to tune (no parallel maps, a fixed prefetch); with autotuning on, `fit` took
    # seconds to return after its last epoch on a 2-core machine.
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensors(tuple(arrays)).repeat().flat_map(one_epoch)
    if decoded is not None:
        dataset = dataset.map(decoded)
    return dataset.prefetch(1).with_options(options)


def _epochs_of_batches(
    files: Any, arrays: list[Any], batch_size: int, shuffle: bool, first_epoch: int
) -> Any:
    """Image files as batches for Keras's own loop, all epochs through one iterator: epoch e in
    the order of the run's seed and e (as `executions`), each batch decoded one ahead."""
    import tensorflow as tf

    with tf.device("/cpu:0"):
        epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    base_seed = tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)
    count = len(files)

    @tf.autograph.experimental.do_not_convert
    def one_epoch(*parts: Any) -> Any:
        if shuffle:
            seed = tf.stack([base_seed, epoch.assign_add(1)])
            order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
            parts = tuple(tf.gather(part, order) for part in parts)
        return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size)

    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    dataset = tf.data.Dataset.from_tensors(tuple(arrays)).repeat().flat_map(one_epoch)
    return dataset.map(files.decoded_map([0])).prefetch(2).with_options(options)
