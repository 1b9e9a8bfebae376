"""Plain Keras doing what `dlcli predict` and `dlcli evaluate` do, as the benchmark's reference.

    python benchmarks/baseline_inference.py MODEL predict PNG_OR_FOLDER
    python benchmarks/baseline_inference.py MODEL evaluate MNIST_NPZ

predict decodes the PNGs with Pillow into one uint8 array and calls `model.predict` on it;
evaluate calls `model.evaluate` on the MNIST test arrays. Both use Keras's defaults. The last
line on stdout is JSON: the seconds spent loading the model, decoding and predicting/evaluating.
"""

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
from PIL import Image

model_path, task, source = sys.argv[1], sys.argv[2], Path(sys.argv[3])

started = time.perf_counter()
model = keras.saving.load_model(model_path)
seconds = {"load_model": time.perf_counter() - started}

started = time.perf_counter()
if task == "predict":
    paths = sorted(source.glob("*.png")) if source.is_dir() else [source]
    images = np.stack([np.asarray(Image.open(path).convert("L")) for path in paths])
else:
    with np.load(source) as arrays:
        images, labels = arrays["x_test"], arrays["y_test"]
seconds["decode"] = time.perf_counter() - started

started = time.perf_counter()
if task == "predict":
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    print(" ".join(str(label) for label in predicted))
    seconds["predict"] = time.perf_counter() - started
else:
    loss, accuracy = model.evaluate(images, labels, verbose=0)
    print(f"loss {loss:.4f} accuracy {accuracy:.4f}")
    seconds["evaluate"] = time.perf_counter() - started
print(json.dumps(seconds))
