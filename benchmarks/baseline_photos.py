"""The baseline for photo folders: Keras's own `image_dataset_from_directory` and a small convnet.

What a user writes without dlcli (keras-io "Image classification from scratch"): the folders
read by `image_dataset_from_directory` (128x128 RGB, batch 32, shuffled, streamed: no cache),
prefetched, the same small convnet as `benchmarks/photo_folders.py`'s spec, one epoch of `fit`,
then `evaluate` on the test folder.

Usage: python benchmarks/baseline_photos.py TRAIN_FOLDER TEST_FOLDER
The last line on stdout is JSON: fit_seconds, test_accuracy, test_loss.
"""

import json
import sys
import time

import keras
import tensorflow as tf
from keras import layers


def convnet() -> keras.Model:
    """Conv2D 16/32/64 on 128x128 RGB, two classes; compiled with Adam."""
    inputs = keras.Input(shape=(128, 128, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    train = keras.utils.image_dataset_from_directory(
        sys.argv[1], image_size=(128, 128), batch_size=32, seed=1
    ).prefetch(tf.data.AUTOTUNE)
    test = keras.utils.image_dataset_from_directory(
        sys.argv[2], image_size=(128, 128), batch_size=32, shuffle=False
    ).prefetch(tf.data.AUTOTUNE)

    keras.utils.set_random_seed(1)
    model = convnet()
    fit_started = time.perf_counter()
    model.fit(train, epochs=1, verbose=2)
    fit_seconds = time.perf_counter() - fit_started
    test_loss, test_acc = model.evaluate(test, verbose=0)
    result = {"fit_seconds": fit_seconds, "test_accuracy": test_acc, "test_loss": test_loss}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
