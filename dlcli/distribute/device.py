"""Where training runs: all GPUs (MirroredStrategy) or the CPU; mixed precision on GPUs; XLA's
compiled programs kept between runs.

TensorFlow and Keras are imported here, and on the main thread only. TensorFlow's `__init__`
imports Keras partway through; a second thread importing either at the same time takes the
module locks in the other order and Python ends one of them with `_DeadlockError` (every
`dlcli train` of a Keras dataset did, while the dataset was read on a thread). So data readers
on other threads do file and numpy work only: where they would need Keras (a Keras dataset's
download), `import_keras` raises `NeedsMainThread` and the caller reads on the main thread.
Do not undo this for speed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlcli.errors import OutputError

if TYPE_CHECKING:
    from dlcli.distribute.cluster import Cluster


class NeedsMainThread(Exception):  # a signal to the caller, not an error
    """Raised on a worker thread by code that needs Keras; the caller retries on the main
    thread."""


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise NeedsMainThread


def import_keras() -> Any:
    """Keras, imported (quietly, with TensorFlow) on the main thread; NeedsMainThread elsewhere.

    Example:
        keras = import_keras()
        keras.datasets.imdb.load_data()
    """
    _require_main_thread()
    import_tensorflow()
    import keras

    return keras


def import_tensorflow() -> None:
    """Import TensorFlow without its start-up lines, on the main thread only.

    Its CUDA stubs print them straight to file descriptor 2 during the import, before any log
    level applies, so the descriptor points at /dev/null until the import is done.

    Raises:
        NeedsMainThread: on any other thread, even when TensorFlow is imported already (the
            caller's code must not depend on which thread happened to be first).
    """
    _require_main_thread()
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class Device:
    kind: str  # "GPU" or "CPU"
    names: list[str]
    mixed_precision: bool
    strategy: Any
    workers: int = (
        1  # processes training together (dlcli.distribute.cluster), each on these devices
    )

    @property
    def description(self) -> str:
        if self.kind == "CPU":
            each = "CPU" if self.workers > 1 else "CPU (no GPU found)"
        else:
            precision = ", mixed precision (float16)" if self.mixed_precision else ""
            plural = "s" if len(self.names) > 1 else ""
            each = f"{len(self.names)} GPU{plural}: {', '.join(self.names)}{precision}"
        return f"{self.workers} workers, each on {each}" if self.workers > 1 else each


def _mixed_precision_safe(details: dict[str, Any]) -> bool:
    """float16 tensor cores need compute capability 7.0 (Volta) or newer."""
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)


def select_device(*, mixed_precision: bool = True, cluster: Cluster | None = None) -> Device:
    """Pick the strategy for this machine and set the Keras dtype policy accordingly.

    In a `cluster`, the strategy is MultiWorkerMirroredStrategy over this machine's GPUs (or
    its CPU), made first: it must exist before anything sets up TensorFlow's devices.
    """
    import tensorflow as tf

    strategy = None
    if cluster is not None:
        from dlcli.distribute import keras_fixes
        from dlcli.distribute.cluster import make_strategy

        strategy = make_strategy(cluster)
        keras_fixes.apply()
    import keras

    workers = cluster.size if cluster else 1
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        keras.mixed_precision.set_global_policy("float32")
        return Device("CPU", [], False, strategy or tf.distribute.get_strategy(), workers)
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    names = [detail.get("device_name", gpu.name) for detail, gpu in zip(details, gpus, strict=True)]
    use_mixed = mixed_precision and all(_mixed_precision_safe(detail) for detail in details)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    if strategy is None:
        several = len(gpus) > 1
        strategy = tf.distribute.MirroredStrategy() if several else tf.distribute.get_strategy()
    return Device("GPU", names, use_mixed, strategy, workers)


# ---------------------------------------------------------------------------------------------
# XLA's compiled programs, kept between runs


def _cpu_identity() -> str:
    """The CPU model and its instruction set flags: compiled code depends on both."""
    import platform

    identity = [platform.machine(), platform.processor()]
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.partition(":")[0].strip()
            if key in ("model name", "flags", "Features", "CPU part") and line not in identity:
                identity.append(line)
    return "\n".join(identity)


# Device files of GPUs that TensorFlow could use (NVIDIA, WSL, ROCm).
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


_KEPT_PROGRAMS = 200


MANIFEST = "dlcli-programs.json"  # sha256 of each program written by a run that finished


def _program_folder() -> Path:
    from importlib import metadata

    from dlcli.utils.cache import cache_dir

    try:  # read without importing TensorFlow: this must run before it sets up its devices
        version = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:  # tensorflow-cpu and the like
        import tensorflow as tf

        version = tf.__version__
    machine = hashlib.sha256(_cpu_identity().encode()).hexdigest()[:12]
    return cache_dir() / "xla" / f"tensorflow-{version}-cpu-{machine}"


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed by another run since it was listed
        return 0.0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keep_compiled_programs() -> str | None:
    """On CPU-only machines, let TensorFlow keep XLA's compiled programs for the next run.

    Compiling a train step takes seconds per batch shape on a small CPU; loading it back takes
    milliseconds (benchmarks/ has the figures). Programs are keyed by their HLO, so another
    model or batch size compiles anew; the folder is per TensorFlow version and CPU, since the
    code is compiled for both (GPU code also depends on the GPU: no cache where one may be).
    TensorFlow loads a program it finds without checking it, and a damaged one fails every
    later run or, truncated, trains nothing: so only programs recorded by a run that finished
    (`record_compiled_programs`, by sha256) are kept, and anything else in the folder is
    deleted first. The flag is read when TensorFlow first sets up its devices (importing Keras
    does), so this runs before TensorFlow or Keras is imported; once the flag is set it does
    nothing.

    Returns:
        A note for the user when the cache folder cannot be used (caching is then off), else
        None.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "tf_xla_persistent_cache_directory" in flags or any(map(os.path.exists, _GPU_DEVICE_FILES)):
        return None
    folder = _program_folder()
    if any(character.isspace() for character in str(folder)):
        return None  # TF_XLA_FLAGS is split at spaces, and TensorFlow aborts on what it can't parse
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        recorded = _recorded(folder)
        programs = sorted(folder.glob("*.pb"), key=_modified)
        for program in programs:
            with suppress(FileNotFoundError):  # another run starting now removed it first
                if recorded.get(program.name) != _digest(program):
                    program.unlink()  # written by a run that did not finish, or damaged since
        for program in [path for path in programs if path.exists()][:-_KEPT_PROGRAMS]:
            program.unlink(missing_ok=True)
        for partial in folder.glob("*.tmp"):
            if _writer_gone(partial.name):
                partial.unlink(missing_ok=True)
    except OSError as error:
        return f"Compiled programs are not cached ({error.strerror or error}: {folder})"
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()
    return None


# TensorFlow 2.21 writes a program to "<name>.pb<random>-<process id>-<time>.tmp" and renames it.
_PARTIAL_PROGRAM = re.compile(r".+\.pb.*-(\d+)-[0-9a-f]+\.tmp")


def _writer_gone(name: str) -> bool:
    """Whether a temporary file TensorFlow left in the program folder belongs to a process that
    no longer runs (killed while writing it): such a file is never finished. Names of another
    form are left alone.

    Example:
        >>> _writer_gone(f"x.pbvm-2144df-{os.getpid()}-66194e5819e40.tmp")
        False
    """
    found = _PARTIAL_PROGRAM.fullmatch(name)
    if found is None:
        return False
    try:
        os.kill(int(found[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        pass
    return False


def _recorded(folder: Path) -> dict[str, str]:
    import json

    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def record_compiled_programs() -> None:
    """After a run finished, record the programs in the cache folder as good (by sha256)."""
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "--tf_xla_persistent_cache_directory=" not in flags:
        return
    folder = Path(flags.split("--tf_xla_persistent_cache_directory=")[1].split()[0])
    if folder != _program_folder():
        return  # the user's own cache folder: not ours to manage
    import json

    from dlcli.utils.atomic import atomic_write

    with suppress(OSError, OutputError):  # the programs stay unrecorded: compiled again
        recorded = {path.name: _digest(path) for path in folder.glob("*.pb")}
        atomic_write(folder / MANIFEST, json.dumps(recorded).encode())
