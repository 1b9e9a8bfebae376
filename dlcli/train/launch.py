"""`dlcli train SPEC --workers N`: a cluster of N worker processes on this machine.

Each worker is `dlcli train` with the same arguments and its own TF_CONFIG (127.0.0.1 and a
free port each, worker 0 the chief), so the path a real cluster takes can be tried, and
tested, on one machine. Their output is relayed line by line, each line prefixed with its
worker. When one worker fails, the others end too (by themselves, as TensorFlow notices, or
stopped); Ctrl-C (or SIGTERM) is passed to all. The machine's GPUs, if any, are divided evenly
between the workers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from dlcli.distribute.cluster import LAUNCHED, TF_CONFIG, check_batch
from dlcli.errors import ClusterError, UsageError

LOST_GRACE = 60.0  # seconds the workers have to end by themselves after one failed
STOP_GRACE = 60.0  # seconds a worker has to stop after SIGTERM or Ctrl-C before it is killed
# What signal.signal returns and takes back: a function, SIG_DFL or SIG_IGN, or None (a
# handler not installed from Python)
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def launch(
    workers: int, spec_path: Path | None, overrides: Sequence[str], resume: Path | None
) -> int:
    """Run this process's `dlcli train` command (without --workers) as `workers` local
    processes of one cluster; the run's exit code: 0, the first failed worker's, or 128 + a
    signal passed on.

    The spec (`spec_path` with `overrides`) or the run to `resume` is checked here first, so
    that a mistake is said once, before any worker starts.

    Raises:
        UsageError: TF_CONFIG is set already, the run to resume is not there, or the GPUs
            cannot be divided evenly.
        ConfigError, DataError: the spec's mistakes, as `dlcli validate` finds them.
    """
    if os.environ.get(TF_CONFIG, "").strip():
        raise UsageError(f"--workers starts its own cluster: unset {TF_CONFIG} to use it")
    if resume is not None and not resume.is_dir():
        raise UsageError(f"--resume {resume}: no such run directory")
    if spec_path is not None:
        from dlcli.data.load import check_files
        from dlcli.spec.load import load_spec

        spec = load_spec(spec_path, overrides)
        check_files(spec.dataset, spec_path.parent, spec_path)
        check_batch(spec.fit.batch_size, workers, str(spec_path))
    arguments = without_workers(sys.argv[1:])
    devices = _split_gpus(_gpus(), workers)
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
    write_lock = threading.Lock()
    signalled: list[int] = []
    with ExitStack() as stack:
        processes: list[subprocess.Popen[bytes]] = []
        for index in range(workers):
            config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            environment = {**os.environ, TF_CONFIG: json.dumps(config), LAUNCHED: str(workers)}
            if devices is not None:
                environment["CUDA_VISIBLE_DEVICES"] = devices[index]
            process = subprocess.Popen(
                [sys.executable, "-m", "dlcli", *arguments],
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C reaches them through this process
            )
            processes.append(process)
            for source, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
                relay = threading.Thread(target=_relay, args=(source, target, index, write_lock))
                relay.start()
                stack.callback(relay.join)
            stack.callback(_end, process)  # before its output is joined: unwinding, it goes first
        stack.enter_context(_passing_signals(processes, signalled))
        failed = _wait(processes, signalled)
    if signalled:
        return 128 + signalled[0]
    if failed is None:
        return 0
    index, code = failed
    if code > 0:
        return code  # the worker said why, in its own words, above
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    print(
        f"Error: worker {index} was killed ({name}); the other workers were stopped",
        file=sys.stderr,
        flush=True,
    )
    return ClusterError.exit_code


def without_workers(arguments: Sequence[str]) -> list[str]:
    """A `dlcli train` command line without its `--workers N`: each worker's.

    Example:
        >>> without_workers(["train", "a.yaml", "--workers", "2", "--set", "x=1"])
        ['train', 'a.yaml', '--set', 'x=1']
    """
    kept, skip = [], False
    for argument in arguments:
        if not skip and argument != "--workers" and not argument.startswith("--workers="):
            kept.append(argument)
        skip = argument == "--workers" and not skip
    return kept


def _wait(processes: list[subprocess.Popen[bytes]], signalled: list[int]) -> tuple[int, int] | None:
    """Wait for every worker; the failure that caused the run's end and its return code, or None.

    After a failure the others have `LOST_GRACE` seconds to end by themselves (TensorFlow finds
    a lost worker within about ten seconds, and each says so); then they get SIGTERM, and
    `STOP_GRACE` seconds later, as after a signal passed on, SIGKILL.

    The cause is a worker killed by a signal this launcher did not send, whenever it is seen:
    the others fail because they lost it, and one of them may be seen to end first (a killed
    process is reaped only once its memory is freed). Otherwise it is the first worker seen to
    fail.
    """
    first_failed: tuple[int, int] | None = None
    killed_from_outside: tuple[int, int] | None = None
    signalled_by_us: set[int] = set()
    term_at, kill_at = math.inf, math.inf
    while True:
        now = time.monotonic()
        codes = [process.poll() for process in processes]
        for index, code in enumerate(codes):
            if code is None or code == 0 or signalled:
                continue
            if first_failed is None:
                first_failed, term_at = (index, code), now + LOST_GRACE
            if code < 0 and index not in signalled_by_us and killed_from_outside is None:
                killed_from_outside = (index, code)
        if all(code is not None for code in codes):
            return killed_from_outside or first_failed
        if signalled and kill_at == math.inf:
            kill_at = now + STOP_GRACE
        if now > term_at:
            term_at, kill_at = math.inf, now + STOP_GRACE
            signalled_by_us |= _signal_running(processes, signal.SIGTERM)
        if now > kill_at:  # stuck: its backups are whole, a kill loses no epoch
            signalled_by_us |= _signal_running(processes, signal.SIGKILL)
        time.sleep(0.1)


def _signal_running(processes: list[subprocess.Popen[bytes]], number: int) -> set[int]:
    """Send `number` to each worker still running; the indices of those it was sent to."""
    sent = set()
    for index, process in enumerate(processes):
        if process.poll() is None:
            process.send_signal(number)
            sent.add(index)
    return sent


class _passing_signals:  # a context manager, named as one
    """SIGINT and SIGTERM to this process go to every worker (each stops as `dlcli train`
    does on them); `signalled` records them."""

    def __init__(self, processes: list[subprocess.Popen[bytes]], signalled: list[int]) -> None:
        self.processes, self.signalled = processes, signalled
        self.previous: dict[int, SignalHandler] = {}

    def __enter__(self) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            self.previous[number] = signal.signal(number, self._pass)

    def _pass(self, number: int, frame: object) -> None:
        self.signalled.append(number)
        _signal_running(self.processes, number)

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Make sure a worker is gone: SIGTERM, then SIGKILL after `STOP_GRACE` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _relay(source: IO[bytes] | None, target: TextIO, index: int, lock: threading.Lock) -> None:
    """Copy a worker's output, line by line, each line prefixed with `worker N | `."""
    assert source is not None
    prefix = f"worker {index} | ".encode()
    for line in iter(source.readline, b""):
        with lock:
            target.buffer.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            target.flush()
    source.close()


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (each held until all are chosen, so they differ)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _gpus() -> list[str]:
    """The GPUs TensorFlow would see here, as CUDA_VISIBLE_DEVICES names them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [name.strip() for name in visible.split(",") if name.strip()]
        return [] if "-1" in names else names
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    return [str(index) for index in range(count)] if listed.returncode == 0 else []


def _split_gpus(gpus: list[str], workers: int) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES for each worker: an equal share of the GPUs; None without GPUs.

    Example:
        >>> _split_gpus(["0", "1", "2", "3"], 2), _split_gpus([], 3)
        (['0,1', '2,3'], None)
    """
    if not gpus:
        return None
    if len(gpus) % workers:
        fits = [n for n in range(1, len(gpus) + 1) if len(gpus) % n == 0]
        raise UsageError(
            f"--workers {workers} cannot share this machine's {len(gpus)} GPUs evenly (every "
            f"worker needs the same number): use --workers {' or '.join(map(str, fits))}"
        )
    share = len(gpus) // workers
    return [",".join(gpus[i * share : (i + 1) * share]) for i in range(workers)]
