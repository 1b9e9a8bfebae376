"""The one place dlcli depends on Keras's private details, each behind a version check.

- The compiled executions of dlcli.train.loop replace `model.train_function` and rely on its
  contract in Keras's TensorFlow trainer (called once per execution with an iterator;
  `train_step` and `get_metrics_result` as in 3.15): `fused_loop_tested`. Other versions train
  with Keras's own loop.
- A fix for Keras's `fit` under MultiWorkerMirroredStrategy, on the Keras versions that need
  it (below).

Keras 3.15's TensorFlow trainer fails twice when a model trains on several workers
(keras-team/keras#20585, tensorflow/tensorflow#72388; the code is the same in 3.16):

1. `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first batch, which it
   reduces across the workers with `strategy.reduce("MEAN", batch)`: "Attempt to convert a
   value (PerReplica...) with an unsupported type". Building needs only the shapes and dtypes,
   which one local replica's part of the batch has.
2. `reduce_per_replica`, which turns each step's losses and metrics into one value, reduces
   them across workers with `strategy.reduce("MEAN", value, axis=0)`, which fails on a scalar:
   "Invalid reduction dimension 0 for input with 0 dimensions". A scalar's mean across the
   replicas is `axis=None`.

3. With `steps_per_execution` above 1, the loop that runs an execution's steps fails: "You
   must feed a value for placeholder tensor 'while/body/.../while/cond/Placeholder'" (the
   steps' collective ops inside `tf.cond` inside `tf.while_loop`). `steps_per_execution`
   says to run one step per execution instead.

`apply` replaces the first two with wrappers that do that and hand everything else to Keras's
own.
Remove this module once a Keras release fixes all three (tests/test_cluster.py shows whether the
installed Keras still fails without it: its test of the bug then fails, and says so).
"""

from __future__ import annotations

from typing import Any

# The versions dlcli installs (pyproject.toml) whose trainer has both bugs; the code is the
# same in 3.16's development branch, so add "3.16." when the pin moves.
AFFECTED = ("3.15.",)
FUSED_LOOP_KERAS = "3.15."  # the versions the compiled executions were tested with


def fused_loop_tested(keras_version: str) -> bool:
    """Whether the compiled executions (dlcli.train.loop) were tested with this Keras version.

    Example:
        >>> fused_loop_tested("3.15.1"), fused_loop_tested("3.16.0")
        (True, False)
    """
    return keras_version.startswith(FUSED_LOOP_KERAS)


def needed(keras_version: str) -> bool:
    """Whether this Keras version's `fit` fails on several workers without the fix.

    Example:
        >>> needed("3.15.1"), needed("3.14.0"), needed("3.17.0")
        (True, False, False)
    """
    return keras_version.startswith(AFFECTED)


def steps_per_execution(keras_version: str, requested: int) -> int:
    """The steps per execution that work on several workers with this Keras version.

    Example:
        >>> steps_per_execution("3.15.1", 78), steps_per_execution("3.17.0", 78)
        (1, 78)
    """
    return 1 if needed(keras_version) else requested


def apply() -> bool:
    """Fix the installed Keras's TensorFlow trainer if its version needs it; whether it did.

    Call it once the strategy exists, before `fit`. Applying it twice changes nothing.
    """
    import keras
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if not needed(keras.__version__):
        return False
    if getattr(trainer.reduce_per_replica, "dlcli_fix", False):
        return True
    symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica = trainer.reduce_per_replica

    def first_local(value: Any, strategy: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build_from_local_batch(self: Any, iterator: Any = None, data_batch: Any = None) -> Any:
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:  # as Keras's own: the first batch of a new iterator
                batch = next(batches)
                data_batch = keras.tree.map_structure(lambda v: first_local(v, strategy), batch)
                break
        return symbolic_build(self, data_batch=data_batch)

    def reduce_scalars_across_workers(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return reduce_per_replica(values, strategy, reduction)

        def reduce(value: Any) -> Any:
            if first_local(value, strategy).shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return keras.tree.map_structure(reduce, values)

    # a mark on the function itself; typeshed gives functions no attributes of their own
    reduce_scalars_across_workers.dlcli_fix = True  # type: ignore[attr-defined]
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer.reduce_per_replica = reduce_scalars_across_workers
    return True
