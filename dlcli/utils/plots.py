"""Every matplotlib file dlcli writes: training curves, confusion matrices, image grids, runs
compared, a search's history and parameter importances.

Figures are drawn with the Agg backend (files only, no window) and rendered to PNG bytes;
the files are written by `dlcli.utils.atomic.atomic_write`, so a reader never sees half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlcli.utils.atomic import atomic_write


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, figure: Any) -> bytes:
    """The figure as PNG bytes, then closed."""
    import io

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def save_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss and each metric per epoch, training and validation side by side."""
    plt = _pyplot()
    atomic_write(path, _png(plt, curves_figure(history)))


def curves_figure(history: dict[str, list[float]]) -> Any:
    """The figure `save_curves` writes: a panel per metric, whole epochs on the x axis."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = [key for key in history if not key.startswith("val_") and key != "learning_rate"]
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        epochs = range(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], "o-", label="training")
        validation = history.get(f"val_{name}", [np.nan] * len(epochs))
        # fit.validation_freq leaves gaps
        validated = [(e, v) for e, v in zip(epochs, validation, strict=True) if not np.isnan(v)]
        if validated:
            axis.plot(*zip(*validated, strict=True), "s--", label="validation")
        axis.set(title=name, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        axis.legend()
    return figure


def save_confusion_matrix(matrix: np.ndarray, labels: list[str], path: Path) -> None:
    """`confusion_matrix_png`, written atomically to `path`."""
    atomic_write(path, confusion_matrix_png(matrix, labels))


def confusion_matrix_png(matrix: np.ndarray, labels: list[str]) -> bytes:
    """`confusion_matrix_figure` as PNG bytes."""
    return _png(_pyplot(), confusion_matrix_figure(matrix, labels))


def confusion_matrix_figure(matrix: np.ndarray, labels: list[str]) -> Any:
    """The confusion matrix as a heat map: a title with the example count, a colour scale of
    counts, and each cell's count (up to 20 classes) in a size the matrix leaves room for."""
    plt = _pyplot()
    size = max(5.0, 0.5 * len(labels) + 3)
    figure, axis = plt.subplots(figsize=(size + 1.2, size))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, label="examples", fraction=0.046, pad=0.04)
    axis.set_title(f"Confusion matrix ({int(matrix.sum()):,} examples)", fontsize=13)
    ticks = range(len(labels))
    axis.set(xticks=ticks, yticks=ticks)
    axis.set_xlabel("predicted class", fontsize=11)
    axis.set_ylabel("true class", fontsize=11)
    axis.set_xticklabels(labels, rotation=90 if len(labels) > 10 else 0, fontsize=10)
    axis.set_yticklabels(labels, fontsize=10)
    if len(labels) <= 20:
        threshold = matrix.max() / 2
        fontsize = 14 if len(labels) <= 5 else 11 if len(labels) <= 10 else 8
        for (row, column), count in np.ndenumerate(matrix):
            color = "white" if count > threshold else "black"
            axis.text(
                column, row, str(count), ha="center", va="center", color=color, fontsize=fontsize
            )
    return figure


def image_grid_png(images: np.ndarray, titles: list[str]) -> bytes:
    """A grid of images (grey or colour, any value range) with a title over each."""
    plt = _pyplot()
    columns = min(6, len(images))
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles, strict=False):
        image = np.asarray(image, dtype="float32")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        axis.set_title(title, fontsize=11)
    return _png(plt, figure)


def save_comparison(
    histories: dict[str, dict[str, list[float]]], names: list[str], path: Path
) -> None:
    """`comparison_png`, written atomically to `path`."""
    atomic_write(path, comparison_png(histories, names))


def comparison_png(histories: dict[str, dict[str, list[float]]], names: list[str]) -> bytes:
    """Runs overlaid: a panel per metric in `names`, a colour per run (the legend names it),
    training solid and validation dashed."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, name in zip(axes[0], names, strict=True):
        for index, (label, history) in enumerate(histories.items()):
            colour = colours[index % len(colours)]
            epochs = range(1, len(history[name]) + 1)
            axis.plot(epochs, history[name], "o-", color=colour, label=label, markersize=3)
            if f"val_{name}" in history:
                axis.plot(
                    epochs,
                    history[f"val_{name}"],
                    "s--",
                    color=colour,
                    markersize=3,
                    label=f"{label} (validation)",
                )
        axis.set(title=name, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        axis.legend(fontsize=8)
    return _png(plt, figure)


MIN_TRIALS_FOR_IMPORTANCES = 5  # fewer completed trials say little about what matters


def save_search_plots(study: Any, metric: str, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """history.png (Optuna's optimisation history, whole trials on the x axis) and, once
    MIN_TRIALS_FOR_IMPORTANCES trials have completed, importances.png (each parameter's
    importance to the metric, the count of trials in its title), drawn by Optuna's matplotlib
    plots: the files written, by name, and a note for a plot left out."""
    written, notes = {}, []
    for name, axes in search_figures(study, metric).items():
        written[name] = folder / f"{name}.png"
        atomic_write(written[name], _png(_pyplot(), axes.figure))
    complete = _completed(study)
    if "importances" not in written:
        notes.append(
            f"importances.png not drawn: {complete} completed trial{'s' * (complete != 1)}; "
            f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCES}"
        )
    return written, notes


def _completed(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def search_figures(study: Any, metric: str) -> dict[str, Any]:
    """The axes `save_search_plots` writes, by file name."""
    import warnings

    import optuna
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization import matplotlib as optuna_plots

    _pyplot()
    complete = _completed(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = {"history": optuna_plots.plot_optimization_history(study, target_name=metric)}
        figures["history"].xaxis.set_major_locator(MaxNLocator(integer=True))  # whole trials
        if complete >= MIN_TRIALS_FOR_IMPORTANCES:
            importances = optuna_plots.plot_param_importances(study, target_name=metric)
            importances.set_title(
                f"Parameter importances (from {complete} completed trials)", loc="left"
            )
            figures["importances"] = importances
    for axes in figures.values():
        figure = axes.figure
        assert isinstance(figure, Figure)  # Optuna draws each plot on a figure of its own
        figure.set_size_inches(7, 4.5)
    return figures
