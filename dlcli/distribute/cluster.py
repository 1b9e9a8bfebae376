"""Training on several machines: the cluster a process belongs to, read from TF_CONFIG (the
variable Kubernetes operators, Vertex AI and Slurm launchers set for each worker), and
TensorFlow's MultiWorkerMirroredStrategy made from it.

The cluster is read and checked before TensorFlow loads. The strategy must be made before
anything else sets up TensorFlow's devices, and only once every worker answers (see
`make_strategy`): a worker that cannot be reached within `DLCLI_CLUSTER_TIMEOUT` seconds is
named, with its address, instead of a wait without end.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

from dlcli.errors import ClusterError, ConfigError

TF_CONFIG = "TF_CONFIG"
TIMEOUT_VARIABLE = "DLCLI_CLUSTER_TIMEOUT"
LAUNCHED = "DLCLI_WORKERS"  # set by `dlcli train --workers N` (dlcli.train.launch) for its workers
DEFAULT_TIMEOUT = 300.0  # seconds for every worker to join: pods and jobs start unevenly


@dataclass(frozen=True)
class Cluster:
    """The workers' addresses (`host:port`, the chief first) and which one this process is."""

    workers: tuple[str, ...]
    index: int
    chief_job: bool = False  # the chief is a task of its own job, `chief`, not worker 0

    def task(self, index: int) -> str:
        """How TensorFlow names a worker in its messages.

        Example:
            >>> Cluster(("a:1", "b:2"), 0).task(1), Cluster(("a:1", "b:2"), 0, True).task(1)
            ('/job:worker/replica:0/task:1', '/job:worker/replica:0/task:0')
        """
        job = "chief" if self.chief_job and index == 0 else "worker"
        return f"/job:{job}/replica:0/task:{index - self.chief_job * (job == 'worker')}"

    @property
    def chief(self) -> bool:
        """Worker 0 writes the run folder; the others train alongside it."""
        return self.index == 0

    @property
    def size(self) -> int:
        return len(self.workers)


def new_seed(cluster: Cluster | None) -> int:
    """A seed for a spec without one: random, but in a cluster the same on every worker (they
    must shuffle the data alike to take disjoint parts of each batch)."""
    if cluster is None:
        return random.SystemRandom().randrange(2**31)
    digest = hashlib.sha256(",".join(cluster.workers).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def from_environment() -> Cluster | None:
    """The cluster TF_CONFIG describes, None when it is unset or empty.

    Raises:
        ClusterError: TF_CONFIG is not JSON, or not a cluster of `chief`/`worker` tasks with
            this task in it.

    Example:
        >>> os.environ[TF_CONFIG] = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'
        >>> from_environment()
        Cluster(workers=('a:1', 'b:2'), index=1, chief_job=False)
        >>> del os.environ[TF_CONFIG]
    """  # noqa: E501
    text = os.environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ClusterError(f"{TF_CONFIG} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ClusterError(f'{TF_CONFIG} must be a JSON object: {{"cluster": ..., "task": ...}}')
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker", []), list):
        raise ClusterError(
            f'{TF_CONFIG} needs "cluster": {{"worker": ["host:port", ...]}} (got {cluster!r})'
        )
    others = sorted(set(cluster) - {"chief", "worker"})
    if others:
        raise ClusterError(
            f"{TF_CONFIG}: dlcli trains with MultiWorkerMirroredStrategy, whose cluster has only "
            f"`chief` and `worker` tasks (found `{others[0]}`)"
        )
    chief = cluster.get("chief", [])
    if not isinstance(chief, list) or len(chief) > 1:
        raise ClusterError(f'{TF_CONFIG}: "chief" must list one address (got {chief!r})')
    workers = [*chief, *cluster.get("worker", [])]
    for address in workers:
        if not isinstance(address, str) or not _port(address):
            raise ClusterError(f"{TF_CONFIG}: {address!r} is not a host:port address")
    if not workers or len(set(workers)) != len(workers):
        raise ClusterError(f"{TF_CONFIG}: the cluster's addresses must be given, each once")
    return Cluster(tuple(workers), _task_index(task, cluster), chief_job=bool(chief))


def _port(address: str) -> int:
    host, _, port = address.rpartition(":")
    return int(port) if host and port.isdigit() and 0 < int(port) < 65536 else 0


def _task_index(task: Any, cluster: dict[str, list[str]]) -> int:
    """This task's place among the workers, the chief (if the cluster names one) first."""
    kind = task.get("type") if isinstance(task, dict) else None
    index = task.get("index", 0) if isinstance(task, dict) else None
    if kind not in cluster or isinstance(index, bool) or not isinstance(index, int):
        jobs = " or ".join(f'"{job}"' for job in cluster)
        raise ClusterError(
            f'{TF_CONFIG} needs "task": {{"type": {jobs}, "index": N}} for this process '
            f"(got {task!r})"
        )
    if not 0 <= index < len(cluster[kind]):
        raise ClusterError(
            f'{TF_CONFIG}: task index {index} is not in the cluster\'s "{kind}" list of '
            f"{len(cluster[kind])}"
        )
    return index + (len(cluster.get("chief", [])) if kind == "worker" else 0)


def check_batch(batch_size: int, replicas: int, where: str) -> None:
    """Each replica trains on an equal part of every batch: `fit.batch_size` is the global
    batch, so the replicas must divide it.

    Example:
        >>> check_batch(64, 2, "spec.yaml")
        >>> try:
        ...     check_batch(50, 4, "spec.yaml")
        ... except ConfigError as error:
        ...     print(str(error).partition(" it is")[0])
        `fit.batch_size` 50 cannot be split evenly between 4 replicas:
    """
    if batch_size % replicas:
        lower = batch_size // replicas * replicas
        nearest = " or ".join(str(b) for b in (lower, lower + replicas) if b > 0)
        raise ConfigError(
            f"`fit.batch_size` {batch_size} cannot be split evenly between {replicas} replicas: "
            f"it is the global batch, so use a multiple of {replicas}, e.g. {nearest} ({where})"
        )


def timeout() -> float:
    """Seconds to wait for every worker to join (DLCLI_CLUSTER_TIMEOUT)."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ClusterError(f"{TIMEOUT_VARIABLE}={text!r}: give the seconds to wait, e.g. 300")
    return seconds


def make_strategy(cluster: Cluster) -> Any:
    """MultiWorkerMirroredStrategy for this cluster; call `wait_for_workers` first.

    TensorFlow waits here for the other workers, inside a call that holds Python's lock (no
    timer can end it), and forever for a worker that never comes.
    """
    import tensorflow as tf

    bypass_proxy(cluster)
    return tf.distribute.MultiWorkerMirroredStrategy()


def bypass_proxy(cluster: Cluster) -> None:
    """Keep the workers' own traffic off any HTTP proxy: gRPC sends it through `http_proxy`
    unless the host is in `no_grpc_proxy` (or `no_proxy`), and a proxy that refuses it leaves
    TensorFlow waiting forever."""
    hosts = [address.rpartition(":")[0].strip("[]") for address in cluster.workers]
    listed = os.environ.get("no_grpc_proxy") or os.environ.get("no_proxy", "")  # noqa: SIM112
    names = [name for name in listed.split(",") if name.strip()]
    os.environ["no_grpc_proxy"] = ",".join(dict.fromkeys([*names, *hosts]))  # noqa: SIM112


def wait_for_workers(cluster: Cluster) -> None:
    """Listen at this worker's address and wait until every other worker answers at its own,
    for `timeout()` seconds at most (before TensorFlow loads: see `make_strategy`).

    Raises:
        ClusterError: a worker cannot be reached in time (named, with its address), or this
            worker's port is taken.
    """
    seconds = timeout()
    port = _port(cluster.workers[cluster.index])
    with socket.socket(socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET) as ear:
        ear.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            ear.bind(("", port))
        except OSError as error:
            raise ClusterError(
                f"worker {cluster.index} of {cluster.size} cannot listen at "
                f"{cluster.workers[cluster.index]}: {error.strerror} (is another process using "
                f"port {port}?)"
            ) from None
        ear.listen(4 * cluster.size)  # the others' connections wait in the backlog, unanswered
        deadline = time.monotonic() + seconds
        silent = {i: a for i, a in enumerate(cluster.workers) if i != cluster.index}
        while True:
            reasons = {i: reason for i, a in silent.items() if (reason := _unreachable(a))}
            silent = {i: silent[i] for i in reasons}
            if not silent:
                return
            if time.monotonic() > deadline:
                named = ", ".join(f"worker {i} at {silent[i]} ({reasons[i]})" for i in silent)
                raise ClusterError(
                    f"worker {cluster.index} of {cluster.size}: cannot reach {named} within "
                    f"{seconds:g} s; start dlcli there with the same cluster in {TF_CONFIG}, or "
                    f"check the address and firewall ({TIMEOUT_VARIABLE} sets the wait)"
                )
            time.sleep(0.2)


def _unreachable(address: str) -> str:
    """Why nothing answers at `host:port` (empty when something does)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return ""
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__
