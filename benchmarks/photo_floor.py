"""The floor under the photo-folder target: the convnet of `baseline_photos.py` fit for one epoch
on pixels already in memory, so no input pipeline can make an epoch cheaper than this one.

Decodes the folders with Keras's own reader first (not timed), then times `fit` on batches of
the decoded pixels (a tf.data pipeline over tensors in memory: nothing to read or decode).
Its `epoch_seconds` (the epoch's steps, from Keras's epoch callbacks; `fit_seconds` adds
making the in-memory dataset) beside `baseline_photos.py`'s `fit_seconds`, on the same folders
in the same hour, bound what any reader can save: no input pipeline makes the steps cheaper.

Usage: python benchmarks/photo_floor.py TRAIN_FOLDER
The last line on stdout is JSON: epoch_seconds, fit_seconds, decode_seconds, images.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_photos import convnet

decode_started = time.perf_counter()
train = keras.utils.image_dataset_from_directory(
    sys.argv[1], image_size=(128, 128), batch_size=256, seed=1
)
batches = [(x.numpy().astype(np.uint8), y.numpy()) for x, y in train]
pixels = np.concatenate([x for x, _ in batches])
labels = np.concatenate([y for _, y in batches])
decode_seconds = time.perf_counter() - decode_started

keras.utils.set_random_seed(1)
model = convnet()

epoch_times = []
timer = keras.callbacks.LambdaCallback(
    on_epoch_begin=lambda epoch, logs: epoch_times.append(time.perf_counter()),
    on_epoch_end=lambda epoch, logs: epoch_times.append(time.perf_counter()),
)
fit_started = time.perf_counter()
batches = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(32)
model.fit(batches.prefetch(tf.data.AUTOTUNE), epochs=1, verbose=2, callbacks=[timer])
fit_seconds = time.perf_counter() - fit_started
print(
    json.dumps(
        {
            "epoch_seconds": epoch_times[1] - epoch_times[0],
            "fit_seconds": fit_seconds,
            "decode_seconds": decode_seconds,
            "images": len(labels),
        }
    )
)
