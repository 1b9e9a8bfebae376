"""The baseline: the book's MNIST script (Deep Learning with Python, chapter 2) as plain Keras.

It reads the same cached MNIST arrays as dlcli (`mnist.npz` in the dlcli cache folder, written
by `dlcli.data.mnist_mirrors.load_mnist`) and otherwise is the book's program unchanged:
reshape to 784,
scale to [0, 1] in float32, Dense(512, relu), Dense(10, softmax), rmsprop, sparse categorical
crossentropy, `fit(epochs=5, batch_size=128)`, `evaluate` on the test set.

Usage: python benchmarks/baseline_mnist.py PATH/TO/mnist.npz [EPOCHS]
The last line on stdout is JSON: fit_seconds, test_accuracy, test_loss.
"""

import json
import sys
import time

import numpy as np
from tensorflow import keras
from tensorflow.keras import layers

with np.load(sys.argv[1]) as archive:
    train_images, train_labels = archive["x_train"], archive["y_train"]
    test_images, test_labels = archive["x_test"], archive["y_test"]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 5

model = keras.Sequential(
    [
        layers.Dense(512, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

train_images = train_images.reshape((60000, 28 * 28))
train_images = train_images.astype("float32") / 255
test_images = test_images.reshape((10000, 28 * 28))
test_images = test_images.astype("float32") / 255

fit_started = time.perf_counter()
model.fit(train_images, train_labels, epochs=epochs, batch_size=128)
fit_seconds = time.perf_counter() - fit_started

test_loss, test_acc = model.evaluate(test_images, test_labels)
print(json.dumps({"fit_seconds": fit_seconds, "test_accuracy": test_acc, "test_loss": test_loss}))
