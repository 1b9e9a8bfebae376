"""The plain way to train a tiny table for many epochs: the same Keras model, `model.fit`.

The work `dlcli train` does for benchmarks/tiny_epochs.py's specs: `iris` (configs/data's
iris_train.csv: Normalization adapted on the training rows, Dense 8 relu, Dense 3 softmax, Adam
0.01, 200 epochs of batches of 16, then scored on iris_test.csv) or `xor` (configs/xor.yaml's
network, data and schedule: 100 epochs of the 4 points, scored on them).

    python benchmarks/baseline_tiny.py iris|xor [DATA_FOLDER]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

started = time.perf_counter()
keras.utils.set_random_seed(42)
if sys.argv[1] == "iris":
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("configs/data")

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str)
        return rows[:, :4].astype("float32"), rows[:, 4]

    x, species = read(folder / "iris_train.csv")
    x_test, test_species = read(folder / "iris_test.csv")
    classes = sorted(set(species))
    y = np.array([classes.index(name) for name in species])
    y_test = np.array([classes.index(name) for name in test_species])
    normalization = keras.layers.Normalization()
    normalization.adapt(x)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            normalization,
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    optimizer = keras.optimizers.Adam(learning_rate=0.01)
    model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs, batch_size = 200, 16
else:
    x = x_test = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
    y = y_test = np.array([0, 1, 1, 0])
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(2, activation="tanh"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    optimizer = keras.optimizers.SGD(learning_rate=0.5, momentum=0.9)
    model.compile(optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    epochs, batch_size = 100, 4
fit_started = time.perf_counter()
model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
fit_seconds = time.perf_counter() - fit_started
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(
    json.dumps(
        {
            "fit_seconds": fit_seconds,
            "accuracy": accuracy,
            "seconds": time.perf_counter() - started,
        }
    )
)
