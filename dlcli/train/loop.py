"""How `fit` runs: steps per execution, and on one device each execution one compiled program
over Keras's own `train_step`, fed by a tf.data pipeline of stacked batches; when an epoch is a
few batches, several epochs to one compiled program (`epochs_per_execution`)."""

from __future__ import annotations

import math
from collections.abc import Callable
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


# The decoded examples of one execution (a stream: image files, windows) take at most this
# much memory.
_DECODED_EXECUTION_BYTES = 64 * 1024 * 1024


def decoded_steps(stream: Any, batch_size: int) -> int:
    """The most steps per execution whose decoded examples fit `_DECODED_EXECUTION_BYTES`.

    Example:
        >>> from dlcli.data.common import ImageInfo
        >>> from dlcli.data.image_stream import ImageFiles
        >>> files = ImageFiles(np.array(["a.jpg"] * 1000), ImageInfo(128, 128, 3), np.array([b""]))
        >>> decoded_steps(files, 32)
        42
    """
    per_example = int(np.prod(stream.shape[1:])) * stream.dtype.itemsize
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

    A stream of examples (`ExampleStream`: image files, windows) runs as its keys, decoded in
    the pipeline. Several replicas, data that is not plain arrays, too much of it for a
    shuffled copy, or not `fused` (a Keras version the executions were not tested with):
    Keras's own adapter and loop. A stream on several replicas comes as a distributed dataset
    of which each worker decodes only its replicas' share of every batch (`replica_batches`).
    `weights`, one per example, are the sample weights of the loss and metrics. A model of
    several inputs takes x as a mapping by input name; one of several outputs takes y, and
    `weights`, as lists in the order of its outputs.
    """
    import keras

    from dlcli.data.example_stream import ExampleStream, replica_batches

    stream = x if isinstance(x, ExampleStream) else None
    if stream is not None:  # a stream's keys stand for its examples until they are decoded
        x = stream.keys
    structure = (x, y) if weights is None else (x, y, weights)
    arrays = keras.tree.flatten(structure)  # x, y and weights may each be a list or mapping
    if stream is not None and (not fused or replicas > 1):
        batches = _epochs_of_batches(arrays, batch_size, shuffle, first_epoch)
        if replicas > 1:
            dataset = model.distribute_strategy.distribute_datasets_from_function(
                lambda context: replica_batches(batches, stream, context)
            )
        else:
            dataset = batches.map(stream.decoded_map([0])).prefetch(2)
        return {
            "x": dataset,
            "steps_per_epoch": math.ceil(len(stream) / batch_size),
            "shuffle": False,
        }
    if stream is None and not compiled_arrays(x, y, weights, replicas=replicas, fused=fused):
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
    decoded = None if stream is None else stream.decoded_map([0, len(arrays)])
    dataset = executions(
        tuple(arrays), batch_size, shuffle, model.steps_per_execution, first_epoch, decoded
    )
    return {
        "x": dataset,
        "steps_per_epoch": math.ceil(len(arrays[0]) / batch_size),
        "shuffle": False,
    }


def compiled_arrays(x: Any, y: Any, weights: Any, *, replicas: int, fused: bool) -> bool:
    """Whether training data in memory runs as dlcli's compiled executions: plain arrays, some
    examples, small enough for a shuffled copy, on one device, with a Keras version they were
    tested with (`fused`); else Keras's own adapter and loop."""
    import keras

    structure = (x, y) if weights is None else (x, y, weights)
    arrays = keras.tree.flatten(structure)
    if not fused or replicas > 1 or not all(isinstance(array, np.ndarray) for array in arrays):
        return False
    return len(arrays[0]) > 0 and sum(array.nbytes for array in arrays) <= _SHUFFLED_COPY_MAX_BYTES


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
    for a stream (`ExampleStream.decoded_map`), its keys into its examples (image files'
    indices into their images, windows' first rows into their rows), made while the previous
    execution trains.
    """
    import tensorflow as tf

    count = len(arrays[0])
    full = count // batch_size
    executions = math.ceil(math.ceil(count / batch_size) / per_execution)
    stacked = (executions - 1) * per_execution  # the full batches of all executions but the last
    # The epoch number lives outside the iterator.
    with tf.device("/cpu:0"):
        epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    base_seed = _base_seed()

    def all_but_last(array: Any) -> Any:  # (executions - 1, per_execution, batch, ...)
        shape = (executions - 1, per_execution, batch_size, *array.shape[1:])
        return tf.reshape(array[: stacked * batch_size], shape)

    def last(array: Any) -> Any:  # the last execution's full batches: (full - stacked, batch, ...)
        shape = (full - stacked, batch_size, *array.shape[1:])
        return tf.reshape(array[stacked * batch_size : full * batch_size], shape)

    @tf.autograph.experimental.do_not_convert  # plain Python: converting it only costs time
    def one_epoch(*parts: Any) -> Any:
        if shuffle:
            order = _epoch_order(count, base_seed, epoch.assign_add(1))
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


def _epochs_of_batches(arrays: list[Any], batch_size: int, shuffle: bool, first_epoch: int) -> Any:
    """The batches of `arrays` for Keras's own loop, all epochs through one iterator: epoch e
    in the order of the run's seed and e (as `executions`). For a stream, `arrays[0]` holds its
    keys, decoded by the caller's map."""
    import tensorflow as tf

    with tf.device("/cpu:0"):
        epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)
    base_seed = _base_seed()
    count = len(arrays[0])

    @tf.autograph.experimental.do_not_convert
    def one_epoch(*parts: Any) -> Any:
        if shuffle:
            order = _epoch_order(count, base_seed, epoch.assign_add(1))
            parts = tuple(tf.gather(part, order) for part in parts)
        return tf.data.Dataset.from_tensor_slices(parts).batch(batch_size)

    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return (
        tf.data.Dataset.from_tensors(tuple(arrays))
        .repeat()
        .flat_map(one_epoch)
        .with_options(options)
    )


def _as_they_are(*parts: Any) -> tuple[Any, ...]:
    return parts


def _in_program(x: Any) -> tuple[Callable[..., tuple[Any, ...]], Any]:
    """The function that makes a batch of x, y (and weights) what a step takes, and what a
    compiled program takes for x: a stream's `decoded_map` and keys, or x as it is."""
    from dlcli.data.example_stream import ExampleStream

    if isinstance(x, ExampleStream):
        assert x.in_graph, "a stream that Python decodes cannot run inside a compiled program"
        return x.decoded_map([0]), x.keys
    return _as_they_are, x


def _base_seed() -> Any:
    """The run's shuffling seed, drawn from the seed Keras was given (`set_random_seed`): the
    same at the same point of every run of a spec, resumed or not, epochs fused or not."""
    import tensorflow as tf

    return tf.random.uniform([], maxval=2**31 - 1, dtype=tf.int64)


def _epoch_order(count: int, base_seed: Any, epoch_number: Any) -> Any:
    """The order of the examples in epoch `epoch_number` (from 1): a function of the run's
    seed and the epoch alone."""
    import tensorflow as tf

    seed = tf.stack([base_seed, tf.cast(epoch_number, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)


# A compiled program of several epochs runs at most this many steps; Python (progress, Ctrl-C,
# a NaN loss, the backup) runs between such programs.
_STEPS_PER_EPOCHS_EXECUTION = 512


def epochs_per_execution(
    model: Any,
    steps_per_epoch: int,
    *,
    steps_setting: int | str,
    compiled: bool,
    callbacks_between_epochs: bool,
    validation_freq: int,
) -> int:
    """How many epochs one compiled program runs (`fit_epochs_at_once`); 1 is Keras's `fit`.

    Several when all of these hold: an epoch is at most half of `_STEPS_PER_EPOCHS_EXECUTION`
    steps, the steps per execution are dlcli's to choose ("auto"), the data runs as compiled
    executions (`compiled_arrays`), and nothing needs the model between epochs: no callbacks
    but dlcli's progress and backup (`callbacks_between_epochs` false: none of the spec's, a
    search's, MLflow's or TensorBoard's), a learning rate that stays the same (a schedule's
    rate shown per epoch would be the execution's last), and validation every epoch, if any.

    Example:
        >>> import keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> def fused(steps, setting="auto", freq=1):
        ...     return epochs_per_execution(model, steps, steps_setting=setting, compiled=True,
        ...                                 callbacks_between_epochs=False, validation_freq=freq)
        >>> fused(8), fused(1), fused(256), fused(257), fused(8, setting=1), fused(8, freq=2)
        (64, 512, 2, 1, 1, 1)
    """
    import keras

    constant_rate = isinstance(model.optimizer.learning_rate, keras.Variable)
    if not (
        compiled
        and steps_setting == "auto"
        and not callbacks_between_epochs
        and constant_rate
        and validation_freq == 1
    ):
        return 1
    return max(1, _STEPS_PER_EPOCHS_EXECUTION // steps_per_epoch)


def fit_epochs_at_once(
    model: Any,
    x: Any,
    y: Any,
    batch_size: int,
    shuffle: bool,
    *,
    epochs: int,
    first_epoch: int,
    per_execution: int,
    callbacks: list[Any],
    executed: Callable[[], None],
    validation: tuple[Any, Any] | None = None,
    weights: Any = None,
) -> None:
    """Keras's `fit` for data of a few batches: `per_execution` epochs to one compiled program.

    The program runs, for each epoch, what `fit` runs: the metrics reset, Keras's own
    `train_step` over the epoch's batches in the order of `executions` (the run's seed and the
    epoch's number), then, with `validation`, `test_step` over its batches; it returns every
    epoch's logs. The callbacks then hear of each epoch in turn, as `fit` tells them of an epoch
    of one execution (`on_epoch_begin`, `on_train_batch_begin` and `_end` with the training
    logs, `on_epoch_end` with all of them), so the history is the one `fit` would write; only
    then is `executed` called: the model now holds the last of those epochs' weights (the time
    for a backup). `epochs_per_execution` says when the callbacks allow it. Arguments as
    `training_data`'s; `validation` is (x, y), batched as `fit` does, by `batch_size`. An x
    that is a stream made by TensorFlow ops (`ExampleStream.in_graph`: windows) runs as its
    keys, each batch's examples made inside the program.
    """
    import keras
    import tensorflow as tf

    training_examples, x = _in_program(x)
    structure = (x, y) if weights is None else (x, y, weights)
    arrays = keras.tree.flatten(structure)
    validation_examples: Callable[..., tuple[Any, ...]] = _as_they_are
    validation_arrays = []
    if validation is not None:
        validation_examples, validation_x = _in_program(validation[0])
        validation = (validation_x, validation[1])
        validation_arrays = keras.tree.flatten(validation)
    count, steps = len(arrays[0]), math.ceil(len(arrays[0]) / batch_size)
    base_seed = _base_seed()  # drawn where `training_data` draws it for the per-epoch path
    names: dict[str, list[str]] = {}  # the logs' names, training's and validation's, in order

    def batches(
        parts: list[Any],
        run_step: Callable[[Any], Any],
        like: Any,
        examples: Callable[..., tuple[Any, ...]],
    ) -> None:
        """`run_step` over `parts` in batches of `batch_size`, the partial one last, as `fit`;
        `examples` makes each batch's parts what the step takes."""
        whole, rows = divmod(int(parts[0].shape[0]), batch_size)
        stacked = [
            tf.reshape(part[: whole * batch_size], (whole, batch_size, *part.shape[1:]))
            for part in parts
        ]

        def one_step(index: Any) -> Any:
            batch = examples(*[part[index] for part in stacked])
            run_step(keras.tree.pack_sequence_as(like, list(batch)))
            return index + 1

        if whole:
            tf.while_loop(lambda i: i < whole, one_step, [0], parallel_iterations=1)
        if rows:
            rest = examples(*[part[whole * batch_size :] for part in parts])
            run_step(keras.tree.pack_sequence_as(like, list(rest)))

    def results(kind: str) -> list[Any]:
        """The metrics' results now, as `fit` logs them (recording their names while traced)."""
        logs = model.get_metrics_result()
        names[kind] = [f"{kind}{name}" for name in logs]
        return [tf.cast(value, tf.float64) for value in logs.values()]

    def reset_metrics() -> None:
        for metric in model.metrics:
            metric.reset_state()

    # The steps compiled as Keras compiles its own (XLA where `jit_compile`), and the metrics'
    # results outside them, as `fit` computes its logs: XLA may round a division differently.
    @tf.function(jit_compile=model.jit_compile, autograph=False)
    def train_epoch(order: Any, *training: Any) -> None:
        reset_metrics()  # as `fit`, before each epoch
        shuffled = [tf.gather(part, order) for part in training]
        batches(shuffled, model.train_step, structure, training_examples)

    @tf.function(jit_compile=model.jit_compile, autograph=False)
    def validate(*validating: Any) -> None:
        reset_metrics()  # as `evaluate`: then every batch in order
        batches(list(validating), model.test_step, validation, validation_examples)

    @tf.function(autograph=False)
    def execution(orders: Any, epochs_now: Any, *parts: Any) -> Any:
        training, validating = parts[: len(arrays)], parts[len(arrays) :]

        def one_epoch(index: Any, logs: Any) -> Any:
            train_epoch(orders[index], *training)
            values = results("")
            if validating:
                validate(*validating)
                values += results("val_")
            return index + 1, logs.write(index, tf.stack(values))

        logs = tf.TensorArray(tf.float64, size=per_execution)
        _, logs = tf.while_loop(
            lambda index, _: index < epochs_now, one_epoch, [0, logs], parallel_iterations=1
        )
        return logs.stack()

    callback_list = keras.callbacks.CallbackList(
        callbacks, model=model, epochs=epochs, steps=steps, verbose=0
    )
    callback_list.on_train_begin()
    in_order = tf.range(count)
    for start in range(first_epoch, epochs, per_execution):
        chosen = range(start, min(start + per_execution, epochs))
        orders = [
            _epoch_order(count, base_seed, epoch + 1) if shuffle else in_order for epoch in chosen
        ]
        orders += [in_order] * (per_execution - len(chosen))  # one shape, one trace
        logs = execution(tf.stack(orders), tf.constant(len(chosen)), *arrays, *validation_arrays)
        logged = [*names[""], *names.get("val_", [])]
        for epoch, values in zip(chosen, logs.numpy(), strict=False):  # then padding rows
            epoch_logs = dict(zip(logged, map(float, values), strict=True))
            callback_list.on_epoch_begin(epoch)
            callback_list.on_train_batch_begin(0)
            training = {name: epoch_logs[name] for name in names[""]}
            callback_list.on_train_batch_end(steps - 1, training)
            callback_list.on_epoch_end(epoch, epoch_logs)
        executed()
    model.optimizer.finalize_variable_values(model.trainable_weights)  # as `fit` ends
    callback_list.on_train_end()
