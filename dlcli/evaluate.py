"""Metrics of a trained model on a dataset split: the numbers behind `dlcli evaluate`."""

from __future__ import annotations

import numpy as np


def predicted_classes(probabilities: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Class index per example from the model's outputs."""
    if task == "binary":
        return (probabilities.reshape(-1) >= threshold).astype("int64")
    return np.argmax(probabilities, axis=-1)


def confusion_matrix(labels: np.ndarray, probabilities: np.ndarray, task: str) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    predicted = predicted_classes(probabilities, task)
    classes = 2 if task == "binary" else probabilities.shape[-1]
    labels = labels.reshape(-1).astype("int64")
    matrix = np.zeros((classes, classes), dtype="int64")
    np.add.at(matrix, (labels, predicted), 1)
    return matrix
