"""The plain way to train on a large CSV file: pandas `read_csv`, then the same Keras model.

The work `dlcli train` does for benchmarks/csv_scale.py's spec: read the table, fit the MLP for
one epoch, then score it on the training rows (the spec has no test file).

    python benchmarks/baseline_csv.py TABLE.csv
"""

from __future__ import annotations

import json
import sys
import time

import keras
import numpy as np
import pandas as pd

started = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
y = frame.pop("label").to_numpy(dtype=np.int64)
x = frame.to_numpy(dtype=np.float32)
del frame
keras.utils.set_random_seed(42)
model = keras.Sequential(
    [
        keras.Input(shape=(x.shape[1],)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, epochs=1, batch_size=1024, verbose=0)
loss, accuracy = model.evaluate(x, y, batch_size=4096, verbose=0)
print(json.dumps({"accuracy": accuracy, "seconds": time.perf_counter() - started}))
