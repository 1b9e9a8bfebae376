"""What the PNG files show, read back through matplotlib's objects before they are saved:
titles, colour scales, tick labels and text sizes."""

from __future__ import annotations

import numpy as np
import optuna

from dlcli.utils import plots


def test_the_confusion_matrix_has_a_title_a_colour_scale_and_readable_counts() -> None:
    matrix = np.array([[50, 2, 0], [3, 40, 5], [0, 1, 44]])
    figure = plots.confusion_matrix_figure(matrix, ["cat", "dog", "fox"])
    axis, scale = figure.axes
    assert axis.get_title() == "Confusion matrix (145 examples)"
    assert scale.get_ylabel() == "examples"  # the colour bar
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("predicted class", "true class")
    counts = [text for text in axis.texts]
    assert [text.get_text() for text in counts] == [str(n) for n in matrix.flat]
    assert all(text.get_fontsize() >= 11 for text in counts)


def study_of(trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 1, 4), trials)
    return study


def test_the_search_history_counts_whole_trials() -> None:
    figures = plots.search_figures(study_of(2), "val_loss")
    history = figures["history"]
    history.figure.canvas.draw()
    ticks = [tick for tick in history.get_xticks() if history.get_xlim()[0] <= tick]
    assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
    assert "importances" not in figures  # 2 trials: too few to say what matters


def test_importances_say_how_many_trials_they_rest_on() -> None:
    figures = plots.search_figures(study_of(6), "val_loss")
    title = figures["importances"].get_title(loc="left")
    assert title == "Parameter importances (from 6 completed trials)"
