"""An exported model's outputs against the Keras model's: the figures `dlcli export` reports
and records, and whether they are good enough to put the file in place.

Unquantized outputs are held to an absolute tolerance; quantized ones, and OpenVINO's outputs in
the lower precision it picks by default on some CPUs (bfloat16), to the top-1 agreement and the
accuracy they may lose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dlcli.data.common import Arrays
from dlcli.model.scoring import top_classes, true_classes
from dlcli.model.signature import Task

if TYPE_CHECKING:
    from dlcli.model.artifact import ModelInfo

# The largest absolute difference of an unquantized export, and the top-1 agreement and the
# accuracy points a quantized one (or one run in its runtime's lower default precision) may lose.
TOLERANCE = 1e-3
QUANTIZED_AGREEMENT = 0.97
QUANTIZED_ACCURACY_DROP = 0.02
EXACT_HINT = '`ov.Core().compile_model(..., {"INFERENCE_PRECISION_HINT": "f32"})` for exact results'


@dataclass(frozen=True)
class RuntimePrecision:
    """How an export compares with the Keras model in the precision its runtime picks by
    default, where that is lower than the float32 of the main figures (OpenVINO in bfloat16)."""

    precision: str  # bfloat16, float16
    max_abs_diff: float
    top1_agreement: float | None
    exported_accuracy: float | None

    def beyond_allowance(self, *, keras_accuracy: float | None) -> str | None:
        """Why these outputs lose more than a quantized export may, or None."""
        return beyond_tolerance(
            self.max_abs_diff,
            self.top1_agreement,
            keras_accuracy,
            self.exported_accuracy,
            f"in {self.precision}, OpenVINO's default on this CPU",
        )


def shapes_differ(reference: list[np.ndarray], exported: list[np.ndarray]) -> str | None:
    """Why the exported outputs cannot be compared with Keras's, or None when they can."""
    if len(exported) != len(reference) or any(
        a.shape != b.shape for a, b in zip(exported, reference, strict=False)
    ):
        shapes = [a.shape for a in exported], [b.shape for b in reference]
        return f"its outputs have shapes {shapes[0]} but the Keras model's {shapes[1]}"
    return None


def beyond_tolerance(
    difference: float,
    agreement: float | None,
    keras_accuracy: float | None,
    accuracy: float | None,
    lossy: str | None,
) -> str | None:
    """Why the exported outputs (their `figures_of`) are not good enough, or None.

    `lossy` says how they lost precision on purpose ("quantized to int8", "in bfloat16, ..."):
    they are held to the quantized allowance; None holds them to `TOLERANCE`.
    """
    if lossy is None:
        if difference > TOLERANCE:
            return (
                f"its outputs differ from the Keras model's by up to {difference:.3g} "
                f"(tolerance {TOLERANCE})"
            )
        return None
    if agreement is not None and agreement < QUANTIZED_AGREEMENT:
        return (
            f"{lossy}, it agrees with the Keras model on {agreement:.1%} of the examples "
            f"(at least {QUANTIZED_AGREEMENT:.0%} needed)"
        )
    lost = (keras_accuracy or 0.0) - (accuracy if accuracy is not None else 1.0)
    if lost > QUANTIZED_ACCURACY_DROP:
        return (
            f"{lossy}, its accuracy is {accuracy:.4f} against the Keras model's "
            f"{keras_accuracy:.4f}"
        )
    return None


def default_precision_note(at_default: RuntimePrecision, *, keras_accuracy: float | None) -> str:
    """The one line that says OpenVINO's default precision here, its figures, and the hint
    that gives the verified float32."""
    figures = [f"max abs difference {at_default.max_abs_diff:.2g}"]
    if at_default.top1_agreement is not None:
        figures.append(f"{at_default.top1_agreement:.1%} top-1 agreement")
    if keras_accuracy is not None and at_default.exported_accuracy is not None:
        figures.append(f"accuracy {at_default.exported_accuracy:.4f} (Keras {keras_accuracy:.4f})")
    return (
        f"On this CPU OpenVINO runs in {at_default.precision} by default: "
        f"{', '.join(figures)}; {EXACT_HINT}"
    )


def figures_of(
    info: ModelInfo, reference: list[np.ndarray], exported: list[np.ndarray], y: Arrays
) -> tuple[float, float | None, float | None, float | None]:
    """Max absolute difference, top-1 agreement, Keras's and the export's accuracy (the last
    three for a model of one classifying output)."""
    difference = max(
        float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
        for a, b in zip(exported, reference, strict=True)
    )
    if info.task not in (Task.multiclass, Task.binary) or isinstance(y, dict):
        return difference, None, None, None
    task = Task(info.task)  # one output, multiclass or binary
    classes = [top_classes(out, task) for out in (reference[0], exported[0])]
    agreement = float(np.mean(classes[0] == classes[1]))
    labels = true_classes(y, task)
    keras_accuracy, accuracy = (float(np.mean(c == labels)) for c in classes)
    return difference, agreement, keras_accuracy, accuracy
