"""Training as one of several workers (dlcli.distribute.cluster).

The chief (worker 0) writes the run folder as a single process would. Every other worker runs
the same steps, since each pass over the data (fit, evaluate, predict) needs every worker, but
writes into a scratch folder that it deletes at the end; resuming, it reads the backup from
the run folder the chief resumes. Before the first step the workers compare what they are
about to do (the spec, the epoch they start from, their replicas), and a worker that stops
mid-run ends the others with one line, not a hang.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlcli.distribute import keras_fixes
from dlcli.distribute.cluster import Cluster, check_batch
from dlcli.errors import ClusterError, DlcliError, Interrupted, NonFiniteLossError
from dlcli.runs.record import resume_command
from dlcli.spec.schema import Spec
from dlcli.train import backup
from dlcli.train.callbacks import Stop

if TYPE_CHECKING:
    from dlcli.data.common import Splits
    from dlcli.train.callbacks import Monitor
    from dlcli.train.pipeline import ProgressView


@contextmanager
def scratch_folder(cluster: Cluster) -> Iterator[Path]:
    """Where a worker other than the chief writes what the chief writes to the run folder."""
    path = Path(tempfile.mkdtemp(prefix=f"dlcli-worker-{cluster.index}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class WorkerView:
    """A worker's progress, said as a worker's: its scratch folder is not the run's."""

    def __init__(self, view: ProgressView, cluster: Cluster) -> None:
        self.view, self.cluster = view, cluster

    def start(
        self, device: str, splits: Splits, run_dir: Path, *, monitor: Monitor | None = None
    ) -> None:
        self.view.note(
            f"Worker {self.cluster.index} of {self.cluster.size} ({self.cluster.workers[0]} is "
            "the chief, which writes the run folder)"
        )

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """Nothing: the chief shows each epoch's scores, the same on every worker."""

    def __getattr__(self, name: str) -> Any:  # notes, the live bar and its end as the view's
        return getattr(self.view, name)


def for_workers(spec: Spec, device: Any, per_execution: int, notes: list[str]) -> tuple[Spec, int]:
    """The spec and steps per execution that several workers can train with (a note for each
    change): the replicas divide the batch, XLA is off on CPUs (TensorFlow has no XLA collective
    ops for them), and one step per execution where Keras needs it (dlcli.distribute.keras_fixes).

    Raises:
        ConfigError: the batch cannot be split evenly between the replicas.
    """
    import keras

    check_batch(spec.fit.batch_size, device.strategy.num_replicas_in_sync, "the spec")
    if device.kind == "CPU" and spec.compile.jit_compile is True:
        compile_spec = spec.compile.model_copy(update={"jit_compile": False})
        spec = spec.model_copy(update={"compile": compile_spec})
        notes.append(
            "XLA is off (compile.jit_compile): TensorFlow cannot compile the workers' "
            "collective ops for CPUs"
        )
    return spec, keras_fixes.steps_per_execution(keras.__version__, per_execution)


def _fingerprint(spec: Spec) -> int:
    """48 bits of the spec's digest: exact in the float64 the workers exchange."""
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


def _per_worker(strategy: Any, cluster: Cluster, values: list[float]) -> list[list[float]]:
    """`values` of every worker, the chief's first (each a float64 number, exact below 2**53)."""
    import tensorflow as tf

    mine = tf.constant([values], tf.float64)

    @tf.function  # eagerly, the strategy warns of its overhead
    def gather() -> Any:
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(mine, axis=0))

    rows = strategy.experimental_local_results(gather())[0].numpy().tolist()
    return rows[:: max(1, len(rows) // cluster.size)]  # one row per replica: a worker's first


def agree(strategy: Any, cluster: Cluster, spec: Spec, first_epoch: int) -> None:
    """Check that every worker trains the same spec from the same epoch on as many replicas.

    Raises:
        ClusterError: naming the first worker that differs from the chief, and in what.
    """
    local = len(strategy.extended.worker_devices)
    chief, *others = _per_worker(strategy, cluster, [_fingerprint(spec), first_epoch, local])
    for index, row in enumerate(others, start=1):
        if row[2] != chief[2]:
            raise ClusterError(
                f"worker {index} trains on {int(row[2])} devices and the chief on "
                f"{int(chief[2])}: every worker needs the same number of GPUs"
            )
        if row[0] != chief[0]:
            raise ClusterError(
                f"worker {index} has another spec than the chief: every worker must run the "
                "same command with the same spec file and --set options"
            )
        if row[1] != chief[1]:
            raise ClusterError(
                f"worker {index} would start after epoch {int(row[1])} and the chief after "
                f"epoch {int(chief[1])}: to resume, every worker must read the same run folder "
                "(put `output.dir` on a file system they share)"
            )


def same_weights(strategy: Any, cluster: Cluster, model: Any) -> str:
    """Check that training left every worker with the same weights; the line that says so.

    Raises:
        ClusterError: a worker's weights differ from the chief's (a bug, not a user's mistake).
    """
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(np.ascontiguousarray(array).tobytes())
    chief, *others = _per_worker(strategy, cluster, [int.from_bytes(digest.digest()[:6], "big")])
    for index, row in enumerate(others, start=1):
        if row != chief:
            raise ClusterError(f"worker {index} ended training with other weights than the chief")
    return (
        f"Weights after training: sha256 {digest.hexdigest()[:16]}, the same on all "
        f"{cluster.size} workers"
    )


def lost_worker(error: Exception, cluster: Cluster, run_dir: Path) -> ClusterError | None:
    """The one line for a step that failed because another worker stopped (TensorFlow's
    heartbeats found it gone); None for any other error."""
    import tensorflow as tf

    message = str(error)
    if not isinstance(error, tf.errors.UnavailableError | tf.errors.AbortedError) and not (
        isinstance(error, tf.errors.OpError) and "Collective ops is aborted" in message
    ):
        return None
    stopped = [
        f"worker {index} ({address})"
        for index, address in enumerate(cluster.workers)
        if cluster.task(index) in message and index != cluster.index
    ]
    if cluster.chief:
        kept = f"{backup.note(run_dir)}; resume with: {resume_command(run_dir)}"
    else:
        kept = "the chief's run folder keeps the backup of the last epoch"
    return ClusterError(
        f"worker {cluster.index} of {cluster.size}: {', '.join(stopped) or 'another worker'} "
        f"stopped during training; {kept}"
    )


def worker_stop(stop: Stop, cluster: Cluster) -> DlcliError:
    """The error a worker other than the chief ends in when it leaves `fit` early."""
    where = f"worker {cluster.index} of {cluster.size}: in epoch {stop.epoch}, batch {stop.batch}"
    if stop.signal_number:
        name = signal.Signals(stop.signal_number).name
        return Interrupted(
            f"{name} {where}: stopped (the chief keeps the run's backup)", 128 + stop.signal_number
        )
    return NonFiniteLossError(f"{where}: the loss became {stop.loss}; training stopped")
