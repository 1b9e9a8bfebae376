"""`dlcli serve` running: the listening socket bound first (a taken port is one line before
anything loads), the models opened and warmed up, then uvicorn on that socket.

SIGTERM (or Ctrl-C) drains: the server stops accepting connections, says it is not ready,
lets the requests in flight finish and exits 0. A second signal, or requests still running
after `DRAIN_SECONDS`, ends it at once with 143 (130 for SIGINT). With several worker
processes, each is forked after the socket is bound, opens the models itself and drains on
the signal the parent passes on.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from dlcli.errors import ServerError
from dlcli.serve.app import ServerState

DRAIN_SECONDS = 30
SIGNAL_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}


@dataclass(frozen=True)
class ServeOptions:
    """How `dlcli serve` serves: where it listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # processes, each with its own copy of the models
    threads: int = 2  # inference threads per process, sharing each model's session
    max_body: int = 4 * 1024**2
    allow_origins: list[str] = field(default_factory=list)
    runtime_name: str = "auto"
    runs_dir: Path = Path("runs")


def parse_size(text: str) -> int:
    """A size in bytes from `4MiB`, `512KB`, `1048576`.

    >>> parse_size("4MiB"), parse_size("512KB"), parse_size("100")
    (4194304, 512000, 100)

    Raises:
        ServerError: not a size.
    """
    import re

    units = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "KIB": 1024, "MIB": 1024**2}
    found = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not found or found[2].upper() not in units or int(found[1]) < 1:
        raise ServerError(
            f"--max-body takes a size such as 4MiB, 512KB or 100000; received {text!r}"
        )
    return int(found[1]) * units[found[2].upper()]


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one).

    Raises:
        ServerError: the address cannot be bound, naming it and why.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServerError(
            f"cannot listen on {host}:{port}: unknown host ({error.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        hint = {
            errno.EADDRINUSE: "the port is taken by another process; choose another with --port",
            errno.EACCES: "ports below 1024 need privileges; choose another with --port",
            errno.EADDRNOTAVAIL: "the host is not an address of this machine (--host)",
        }.get(error.errno or 0, error.strerror)
        raise ServerError(f"cannot listen on {host}:{port}: {hint}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    models: list[str], names: list[str], options: ServeOptions, say: Callable[[str], None]
) -> int:
    """Serve trained models until SIGTERM or Ctrl-C; the exit code.

    Args:
        models: Each a `.keras` or `.onnx` file, a run folder or a run name
            (`dlcli.serve.served_model.find_model`).
        names: The names to serve the first models under (the spec's name otherwise).
        options: Where to listen and what to accept.
        say: Called with each line worth telling the user (where the server listens).

    Returns:
        0 once drained; 143 (SIGTERM) or 130 (SIGINT) when stopped during the drain.

    Raises:
        ModelFileError: a model is missing, unsafe or not trained by dlcli.
        ServerError: the address cannot be bound, or the names cannot be served.

    Example:

    ```python
    serve(["mnist"], [], ServeOptions(port=8080), print)
    ```
    """
    from dlcli.serve.served_model import find_model

    for text in models:  # a missing model is said before the port is taken
        find_model(text, options.runs_dir)
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    if options.workers > 1:
        return _supervise(sock, models, names, options, say, port)
    return _serve_here(sock, models, names, options, say, port)


def _serve_here(
    sock: socket.socket,
    models: list[str],
    names: list[str],
    options: ServeOptions,
    say: Callable[[str], None],
    port: int,
) -> int:
    """Open the models and serve them in this process on `sock`."""
    from dlcli.serve.app import create_app
    from dlcli.serve.served_model import open_models

    threads = max(1, (os.cpu_count() or 1) // options.threads)
    served = open_models(
        models,
        names=names,
        runs_dir=options.runs_dir,
        runtime_name=options.runtime_name,
        onnx_threads=threads,
    )
    app = create_app(
        served,
        threads=options.threads,
        max_body=options.max_body,
        allow_origins=options.allow_origins,
    )
    host = f"[{options.host}]" if ":" in options.host else options.host
    for model in served:
        path = model.predictor.path
        say(
            f"Serving {model.name} ({path}, {model.predictor.runtime_name}) at "
            f"http://{host}:{port}/v2/models/{model.name}"
        )
    say(f"Page: http://{host}:{port}/  (SIGTERM or Ctrl-C drains and stops)")
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=DRAIN_SECONDS,
        http="httptools" if _has("httptools") else "h11",
        loop="uvloop" if _has("uvloop") else "asyncio",
    )
    server = _DrainingServer(config, app.state.serving)
    # What start-up loaded lives as long as the server: kept out of the garbage collector's
    # full passes, whose pauses over it would land on requests.
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])
    app.state.serving.pool.shutdown(wait=True)
    return SIGNAL_CODES.get(server.last_signal, 143) if server.stopped_hard else 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class _DrainingServer(uvicorn.Server):
    """uvicorn's Server, whose signals drain (the first) or stop at once (a second one, or a
    drain past its time), and are not raised again once the server is done (as uvicorn's
    are, which would end every drained server with 143)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state
        self.last_signal = signal.SIGTERM
        self.cancelled = False

    @property
    def stopped_hard(self) -> bool:
        return self.force_exit or self.cancelled

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        self.last_signal = signal.Signals(sig)
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNAL_CODES}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def _wait_tasks_to_complete(self) -> None:
        try:
            await super()._wait_tasks_to_complete()
        except BaseException:  # the drain's time ran out: the requests left are cancelled
            self.cancelled = True
            raise


def _supervise(
    sock: socket.socket,
    models: list[str],
    names: list[str],
    options: ServeOptions,
    say: Callable[[str], None],
    port: int,
) -> int:
    """Fork `options.workers` processes serving on `sock`; pass SIGTERM and SIGINT on to
    them; the highest of their exit codes."""
    children = []
    for number in range(options.workers):
        child = os.fork()
        if child == 0:
            code = 1
            try:
                quiet = say if number == 0 else (lambda line: None)
                code = _serve_here(sock, models, names, options, quiet, port)
            except Exception as error:  # a worker's error, said once by the worker
                print(f"Error: worker {number}: {error}", file=sys.stderr, flush=True)
                code = getattr(error, "exit_code", 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(child)
    sock.close()

    def pass_on(sig: int, frame: FrameType | None) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    for sig in SIGNAL_CODES:
        signal.signal(sig, pass_on)
    codes = []
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        codes.append(os.waitstatus_to_exitcode(status))
    return max((128 - code if code < 0 else code) for code in codes)
