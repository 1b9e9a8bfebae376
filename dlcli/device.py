"""Where training runs: all GPUs (MirroredStrategy) or the CPU; mixed precision on GPUs.

TensorFlow and Keras are imported here, and on the main thread only. TensorFlow's `__init__`
imports Keras partway through; a second thread importing either at the same time takes the
module locks in the other order and Python ends one of them with `_DeadlockError` (every
`dlcli train` of a Keras dataset did, while the dataset was read on a thread). So data readers
on other threads do file and numpy work only: where they would need Keras (a Keras dataset's
download), `import_keras` raises `NeedsMainThread` and the caller reads on the main thread.
Do not undo this for speed.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any


class NeedsMainThread(Exception):  # noqa: N818 (a signal to the caller, not an error)
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

    @property
    def description(self) -> str:
        if self.kind == "CPU":
            return "CPU (no GPU found)"
        precision = ", mixed precision (float16)" if self.mixed_precision else ""
        plural = "s" if len(self.names) > 1 else ""
        return f"{len(self.names)} GPU{plural}: {', '.join(self.names)}{precision}"


def _mixed_precision_safe(details: dict[str, Any]) -> bool:
    """float16 tensor cores need compute capability 7.0 (Volta) or newer."""
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)


def select_device(*, mixed_precision: bool = True) -> Device:
    """Pick the strategy for this machine and set the Keras dtype policy accordingly."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        keras.mixed_precision.set_global_policy("float32")
        return Device("CPU", [], False, tf.distribute.get_strategy())
    details = [tf.config.experimental.get_device_details(gpu) for gpu in gpus]
    names = [detail.get("device_name", gpu.name) for detail, gpu in zip(details, gpus, strict=True)]
    use_mixed = mixed_precision and all(_mixed_precision_safe(detail) for detail in details)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return Device("GPU", names, use_mixed, strategy)
