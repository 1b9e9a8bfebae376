"""All terminal rendering (rich) and plots; nothing else in dlcli prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from dlcli.data import Splits
    from dlcli.train import TrainResult

_LOG_ORDER = ("loss", "accuracy")
MAX_TABLE_ROWS = 20


def _sample(rows: list[Any], limit: int) -> list[Any]:
    """At most `limit` rows, evenly spaced, always with the last."""
    if len(rows) <= limit:
        return rows
    step = len(rows) / (limit - 1)
    return [rows[int(i * step)] for i in range(limit - 1)] + [rows[-1]]


def _format_logs(logs: dict[str, float]) -> str:
    keys = sorted(logs, key=lambda k: (k.startswith("val_"), k not in _LOG_ORDER, k))
    return "  ".join(f"{key} {logs[key]:.4f}" for key in keys)


class TrainView:
    """Live progress: a bar per epoch with loss and metrics, then a table of epochs.

    Updates arrive once per `steps_per_execution` steps; rich redraws at most 10 times a
    second, so the training loop pays nothing per batch.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[logs]}"),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.epochs: list[tuple[int, dict[str, float], float]] = []
        self.epoch_started = 0.0
        self.last_line = 0.0

    def start(self, device: str, splits: Splits, run_dir: Path) -> None:
        sizes = ", ".join(f"{name} {count:,}" for name, count in splits.info.sizes.items() if count)
        self.console.print(f"Training on {device}")
        self.console.print(f"Data: {splits.info.source} ({sizes})")
        self.console.print(f"Run directory: {run_dir}")
        self.progress.start()

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.epoch_started = time.perf_counter()
        self.task = self.progress.add_task("", total=steps, epoch=f"{epoch}/{epochs}", logs="")

    def advance(self, steps_done: int, logs: dict[str, float]) -> None:
        self.progress.update(self.task, completed=steps_done, logs=_format_logs(logs))

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        seconds = time.perf_counter() - self.epoch_started
        self.epochs.append((epoch, logs, seconds))
        now = time.perf_counter()
        if not self.console.is_terminal and now - self.last_line >= 2.0:
            self.last_line = now
            self.console.print(f"epoch {epoch}: {_format_logs(logs)} ({seconds:.1f}s)")

    def stop(self) -> None:
        self.progress.stop()
        if not self.epochs:
            return
        table = Table(title="Training", title_justify="left")
        table.add_column("epoch", justify="right")
        keys = sorted(self.epochs[-1][1], key=lambda k: (k.startswith("val_"), k))
        for key in keys:
            table.add_column(key, justify="right")
        table.add_column("time", justify="right")
        for epoch, logs, seconds in _sample(self.epochs, MAX_TABLE_ROWS):
            cells = [f"{logs[k]:.4f}" if k in logs else "" for k in keys]
            table.add_row(str(epoch), *cells, f"{seconds:.1f}s")
        self.console.print(table)


def train_result(console: Console, result: TrainResult) -> None:
    """Test metrics and where everything was written."""
    split = "training data (no test split)" if result.evaluated_on == "train" else "test set"
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in result.test_metrics.items())
    console.print(f"On the {split}: {metrics}")
    console.print(
        f"Fit {result.fit_seconds:.1f}s, total {result.total_seconds:.1f}s on {result.device}"
    )
    console.print(f"Model: {result.model_path}")
    console.print(f"Run directory: {result.run_dir}")


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and each metric per epoch, training and validation side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [key for key in history if not key.startswith("val_") and key != "learning_rate"]
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        epochs = range(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], "o-", label="training")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], "s--", label="validation")
        axis.set(title=name, xlabel="epoch")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_confusion_matrix(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    """The confusion matrix as a heat map with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.45 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    axis.set_xticklabels(labels, rotation=90 if len(labels) > 10 else 0)
    axis.set_yticklabels(labels)
    if len(labels) <= 20:
        threshold = matrix.max() / 2
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if count > threshold else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
