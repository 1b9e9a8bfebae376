"""Where training runs: all GPUs (MirroredStrategy) or the CPU; mixed precision on GPUs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any


def import_tensorflow() -> None:
    """Import TensorFlow without its start-up lines.

    Its CUDA stubs print them straight to file descriptor 2 during the import, before any log
    level applies, so the descriptor points at /dev/null until the import is done.
    """
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
