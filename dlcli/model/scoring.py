"""The numbers of a trained model on labelled examples: no rendering, no files.

Loss and the compiled metrics come from Keras (`score`); the per-class report, confusion
matrix, ROC AUC and regression errors are computed here from the model's outputs, so training
(metrics.json, confusion_matrix.png) and `dlcli evaluate` report the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from dlcli.model.signature import ModelTask, Task

EVALUATE_BATCH_SIZE = 1024
MOST_CONFUSED = 5
BINARY_THRESHOLD = 0.5  # what Keras's accuracy metrics use for a sigmoid output
CLASSIFIERS = (Task.multiclass, Task.binary, Task.multilabel)
BATCH_BYTES = 64 * 1024 * 1024  # activations one inference batch may take
EAGER_BATCHES = 8  # a pass of at most this many batches runs eagerly: tracing costs more


def _batch_size(model: Any, least: int, examples: int) -> int:
    """As large as about `BATCH_BYTES` of activations, and at least `least`.

    Each batch costs a Python round trip and each new batch shape a trace, so one pass over a
    split goes fastest in few, large batches; the activations of a batch bound its size.
    """
    try:
        shapes = [tensor.shape for tensor in model.inputs]
        shapes += [layer.output.shape for layer in model.layers]
        per_example = 4 * sum(math.prod(d or 1 for d in shape[1:]) for shape in shapes)
    except (AttributeError, ValueError, TypeError):  # nested or multi-output layers
        return max(least, EVALUATE_BATCH_SIZE)
    return max(least, min(examples, BATCH_BYTES // max(per_example, 1)))


def score(
    model: Any, x: Any, y: Any, least_batch: int, *, outputs: bool = True
) -> tuple[dict[str, float], Any]:
    """Keras's loss and compiled metrics on (x, y), and the model's outputs if `outputs`
    (an array, or a list of one per output for a model of several).

    One pass of the model over x, in large batches (at least `least_batch`): the loss and
    metrics come from its outputs (`compute_loss`, `compute_metrics`, as Keras's `test_step`
    computes them), not from a second pass. A pass of a few batches runs eagerly, since
    tracing it would cost more than it saves. A stream of examples (`ExampleStream`: image
    files, windows) is decoded a batch at a time. On several replicas, `evaluate` and
    `predict` run through the distribution strategy.
    """
    from dlcli.data.example_stream import ExampleStream

    examples = len(y[0] if isinstance(y, list) else y)
    batch_size = _batch_size(model, least_batch, examples)
    streamed = isinstance(x, ExampleStream)  # the loss does not read x: scored without it
    replicas = model.distribute_strategy.num_replicas_in_sync
    eager = replicas == 1 and math.ceil(examples / batch_size) <= EAGER_BATCHES
    if streamed and not eager:
        batches = x.batches(batch_size, strategy=model.distribute_strategy)  # a worker: its part
        predicted = model.predict(batches, verbose=0)
        scores = _scores(model, None, y, predicted)
    elif replicas > 1:
        metrics = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        predicted = model.predict(x, batch_size=batch_size, verbose=0) if outputs else None
        scores = {name: float(value) for name, value in metrics.items()}
    else:
        if eager:
            predicted = _predict_eagerly(model, x, batch_size, examples)
        else:
            predicted = model.predict(x, batch_size=batch_size, verbose=0)
        scores = _scores(model, None if streamed else x, y, predicted)
    if not outputs:
        return scores, None
    if isinstance(predicted, list | tuple):  # several outputs: an array each
        return scores, output_arrays(predicted)
    return scores, np.asarray(predicted)


def _predict_eagerly(model: Any, x: Any, batch_size: int, examples: int) -> Any:
    """The model's outputs for x (an array, a list or mapping of them, or a stream of examples
    decoded a batch at a time), `batch_size` examples at a time, run op by op without tracing a
    program."""
    import keras

    from dlcli.data.example_stream import ExampleStream

    def batch(start: int) -> Any:
        if isinstance(x, ExampleStream):
            return x.decode(np.arange(start, min(start + batch_size, examples)))
        return keras.tree.map_structure(itemgetter(slice(start, start + batch_size)), x)

    model.run_eagerly = True
    model.make_predict_function(force=True)
    parts = [model.predict_on_batch(batch(start)) for start in range(0, examples, batch_size)]
    return keras.tree.map_structure(lambda *outputs: np.concatenate(outputs), *parts)


def _scores(model: Any, x: Any, y: Any, predicted: Any) -> dict[str, float]:
    """The loss and compiled metrics of the model's outputs `predicted` for x, against y."""
    model.reset_metrics()
    loss = model.compute_loss(x=x, y=y, y_pred=predicted, training=False)
    scores = {name: float(value) for name, value in model.compute_metrics(x, y, predicted).items()}
    scores["loss"] = float(loss)  # the loss tracker is `test_step`'s alone
    return dict(sorted(scores.items()))  # in the order `evaluate` gives


# ---------------------------------------------------------------------------------------------
# Outputs as probabilities and classes


def outputs_are_logits(model: Any) -> bool:
    """Whether the model's last layer leaves its outputs linear (no softmax or sigmoid), as
    models compiled with `from_logits=True` do."""
    last = model.layers[-1] if model.layers else None
    return getattr(getattr(last, "activation", None), "__name__", "") == "linear"


def as_probabilities(outputs: np.ndarray, task: Task, logits: bool) -> tuple[np.ndarray, bool]:
    """A classifier's outputs as probabilities, and whether they had to be converted.

    Logits (`logits`, or values that no probabilities have: outside [0, 1], or multiclass rows
    that do not sum to 1) go through softmax (multiclass) or sigmoid (binary, multilabel).

    Example:
        as_probabilities(np.array([[2.0, 0.0]]), Task.multiclass, False)
        # (array([[0.881, 0.119]]), True)
    """
    values = np.asarray(outputs, dtype="float64")
    if not logits and values.size:
        outside = values.min() < 0 or values.max() > 1
        unsummed = task == Task.multiclass and not np.allclose(values.sum(axis=-1), 1, atol=1e-3)
        logits = bool(outside or unsummed)
    if not logits or task not in CLASSIFIERS:
        return outputs, False
    if task == Task.multiclass:
        shifted = np.exp(values - values.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True), True
    return 1 / (1 + np.exp(-values)), True


def logits_note(task: ModelTask) -> str:
    """What `as_probabilities` did, said once."""
    function = "softmax" if task == Task.multiclass else "sigmoid"
    return f"the model's outputs are logits: shown through {function}"


def true_classes(labels: np.ndarray, task: Task) -> np.ndarray:
    """Class index per example from sparse, one-hot or 0/1 float labels."""
    labels = np.asarray(labels)
    if task == Task.binary:
        return (labels.reshape(-1) >= 0.5).astype("int64")
    if labels.ndim == 2 and labels.shape[1] > 1:
        return np.argmax(labels, axis=-1)
    return labels.reshape(-1).astype("int64")


def predicted_classes(probabilities: np.ndarray, task: Task, threshold: float = 0.5) -> np.ndarray:
    """Class index per example from the model's outputs."""
    if task == Task.binary:
        return (probabilities.reshape(-1) >= threshold).astype("int64")
    return np.argmax(probabilities, axis=-1)


def top_classes(outputs: np.ndarray, task: Task) -> np.ndarray:
    """Class index per example from a classifier's raw outputs (probabilities or logits)."""
    return predicted_classes(as_probabilities(outputs, task, False)[0], task)


def output_arrays(predicted: Any) -> list[np.ndarray]:
    """One array per model output, from what `predict` or a runtime returns (an array, or a
    list or tuple of them for several outputs)."""
    several = isinstance(predicted, list | tuple)
    return [np.asarray(values) for values in (predicted if several else [predicted])]


def confident_mistakes(
    labels: np.ndarray, probabilities: np.ndarray, task: Task
) -> list[tuple[int, int, int, float]]:
    """(example, true class, predicted class, confidence) of each wrong prediction, the most
    confident first."""
    truth, guessed = true_classes(labels, task), predicted_classes(probabilities, task)
    if task == Task.binary:
        confidence = np.abs(probabilities.reshape(-1) - 0.5) + 0.5
    else:
        confidence = probabilities.max(axis=-1)
    wrong = np.flatnonzero(truth != guessed)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return [(int(i), int(truth[i]), int(guessed[i]), float(confidence[i])) for i in wrong]


# ---------------------------------------------------------------------------------------------
# Classification


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, task: Task) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    predicted = predicted_classes(probabilities, task)
    classes = 2 if task == Task.binary else probabilities.shape[-1]
    matrix = np.zeros((classes, classes), dtype="int64")
    np.add.at(matrix, (true_classes(labels, task), predicted), 1)
    return matrix


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def scores_from_counts(
    names: list[str], true_positives: np.ndarray, predicted: np.ndarray, support: np.ndarray
) -> tuple[list[ClassScores], dict[str, ClassScores]]:
    """Per-class precision, recall and F1, then their macro and weighted averages.

    A class that is neither present nor predicted is left out of the macro average (as
    scikit-learn does when the labels are not given).
    """
    classes = []
    for name, hits, guessed, count in zip(names, true_positives, predicted, support, strict=True):
        precision, recall = _ratio(hits, guessed), _ratio(hits, count)
        classes.append(ClassScores(name, precision, recall, _f1(precision, recall), int(count)))
    seen = [c for c, guessed in zip(classes, predicted, strict=True) if c.support or guessed]
    total = sum(c.support for c in classes)
    averages = {}
    for label, weights in (
        ("macro avg", [1.0] * len(seen)),
        ("weighted avg", [float(c.support) for c in seen]),
    ):
        weight_sum = sum(weights) or 1.0
        averages[label] = ClassScores(
            label,
            sum(w * c.precision for w, c in zip(weights, seen, strict=True)) / weight_sum,
            sum(w * c.recall for w, c in zip(weights, seen, strict=True)) / weight_sum,
            sum(w * c.f1 for w, c in zip(weights, seen, strict=True)) / weight_sum,
            total,
        )
    return classes, averages


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None when
    only one class is present."""
    positive = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype="float64").reshape(-1)
    positives, negatives = int(positive.sum()), int((~positive).sum())
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based rank, averaged over ties
    ranks = average_rank[inverse]
    return float(
        (ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def most_confused(matrix: np.ndarray, names: list[str], limit: int) -> list[tuple[str, str, int]]:
    """The largest off-diagonal counts: (true class, predicted class, count)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:limit]
    pairs = [np.unravel_index(index, off.shape) for index in order]
    return [(names[t], names[p], int(off[t, p])) for t, p in pairs if off[t, p] > 0]


def classification(
    task: Task, y: np.ndarray, probabilities: np.ndarray, class_names: list[str] | None
) -> dict[str, Any]:
    """Per-class scores, averages, confusion matrix and (binary) ROC AUC, by the names of
    `dlcli.inference.evaluate.Evaluation`'s fields (a multilabel model has no confusion matrix)."""
    if task == Task.multilabel:
        truth = np.asarray(y).reshape(len(y), -1) >= 0.5
        guessed = probabilities.reshape(len(probabilities), -1) >= BINARY_THRESHOLD
        names = class_names or [str(i) for i in range(truth.shape[1])]
        classes, averages = scores_from_counts(
            names, (truth & guessed).sum(axis=0), guessed.sum(axis=0), truth.sum(axis=0)
        )
        return {"classes": classes, "averages": averages, "threshold": BINARY_THRESHOLD}
    matrix = confusion_matrix(y, probabilities, task)
    names = list(class_names or [])
    if len(names) != len(matrix):
        names = [str(i) for i in range(len(matrix))]
    classes, averages = scores_from_counts(
        names, np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)
    )
    result: dict[str, Any] = {
        "class_names": names,
        "classes": classes,
        "averages": averages,
        "confusion": matrix,
        "confused_pairs": most_confused(matrix, names, MOST_CONFUSED),
    }
    if task == Task.binary:
        result["threshold"] = BINARY_THRESHOLD
        result["roc_auc"] = roc_auc(true_classes(y, task), probabilities)
    return result


# ---------------------------------------------------------------------------------------------
# Regression


def regression_errors(targets: np.ndarray, outputs: np.ndarray) -> dict[str, float | None]:
    """MAE, MSE, RMSE and R² over every output value (R² is None for constant targets)."""
    targets = np.asarray(targets, dtype="float64").reshape(len(targets), -1)
    outputs = np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)
    error = outputs - targets
    mse = float(np.mean(error**2))
    total = float(np.sum((targets - targets.mean(axis=0)) ** 2))
    r2 = None if total == 0 else 1.0 - float(np.sum(error**2)) / total
    return {"mae": float(np.mean(np.abs(error))), "mse": mse, "rmse": mse**0.5, "r2": r2}
