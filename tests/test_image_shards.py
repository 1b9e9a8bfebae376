"""Photo folders streamed on several workers and under mixed precision: each worker decodes
only its own part of every batch, the parts together being the batches one process trains on
(in-process, as TensorFlow calls each worker's input pipeline, and `dlcli train --workers 2`
in subprocesses); and a streamed folder trained under the mixed_float16 policy that dlcli sets
on GPUs, on this machine's CPU."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .helpers import run_cli, write_photos
from .test_cluster import WEIGHTS, weights_digest

BATCH_SIZE = 10


def photo_files(folder: Path, count: int) -> Any:
    """`count` photos of two classes as `ImageFiles` of 16x16 RGB, in the order of their names."""
    from dlcli.data.common import ImageInfo
    from dlcli.data.image_stream import ImageFiles

    write_photos(folder, count=(count + 1) // 2)
    paths = np.array(sorted(str(path) for path in folder.rglob("*.png")))[:count]
    return ImageFiles(paths, ImageInfo(16, 16, 3), np.array([b""] * count))


class WorkerOfTwo:
    """The input side of a MultiWorkerMirroredStrategy of two workers with a replica each, as
    worker `index` sees it: TensorFlow calls a dataset function once on each worker, with that
    worker's `InputContext`, and the worker's replica takes the batches it gives."""

    num_replicas_in_sync = 2

    def __init__(self, index: int) -> None:
        self.index = index

    def distribute_datasets_from_function(self, dataset_function: Any) -> Any:
        import tensorflow as tf

        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=self.index, num_replicas_in_sync=2
        )
        return dataset_function(context)


def one_process_batches(count: int, epochs: int) -> list[np.ndarray]:
    """The examples of each batch one process trains on (dlcli's compiled executions, one
    batch each), for `epochs` epochs of `count` examples."""
    import tensorflow as tf

    from dlcli.train.loop import executions

    tf.random.set_seed(7)
    indices = np.arange(count, dtype=np.int64)
    steps = -(-count // BATCH_SIZE)
    batches = []
    for stacked, _, rest, _ in executions((indices, indices), BATCH_SIZE, True, 1).take(
        steps * epochs
    ):
        batches += [batch.numpy() for batch in stacked] + ([rest.numpy()] if len(rest) else [])
    return batches


def test_each_worker_decodes_only_its_part_of_each_batch_of_one_process(tmp_path: Path) -> None:
    """Two epochs of 23 photos in batches of 10 (the last of 3): worker 0 of 2 takes the first
    part of each batch (5, 5, then 2) and worker 1 the rest, in the order one process trains
    on, and each decodes only the files of its own part (the labels are the examples' own
    numbers, so each batch says which files it holds). Resumed after epoch 1, a worker takes
    its parts of epoch 2 again."""
    from types import SimpleNamespace

    import tensorflow as tf

    from dlcli.train.loop import training_data

    count, epochs = 23, 2
    expected = one_process_batches(count, epochs)
    shares: dict[int, list[np.ndarray]] = {}
    decoded: dict[int, list[np.ndarray]] = {}
    for worker in (0, 1):
        files = photo_files(tmp_path / f"photos-{worker}", count)
        decoded[worker] = []

        def recorded(indices: np.ndarray, files: Any = files, worker: int = worker) -> Any:
            decoded[worker].append(np.array(indices))
            return type(files).decode(files, indices)

        files.decode = recorded  # the real decoder, each call's files written down
        model = SimpleNamespace(distribute_strategy=WorkerOfTwo(worker))
        tf.random.set_seed(7)  # as every worker's seed: the same orders
        data = training_data(
            model, files, np.arange(count), BATCH_SIZE, True, replicas=2, first_epoch=0
        )
        shares[worker] = []
        for pixels, labels in data["x"].take(len(expected)):
            np.testing.assert_array_equal(pixels, type(files).decode(files, labels.numpy()))
            shares[worker].append(labels.numpy())
        assert data["steps_per_epoch"] == 3
    for step, batch in enumerate(expected):
        first, second = shares[0][step], shares[1][step]
        assert len(first) == -(-len(batch) // 2) and not set(first) & set(second)
        np.testing.assert_array_equal(np.concatenate([first, second]), batch)
    # tf.data may run the decoding map in parallel (its map_parallelization), so the calls can
    # come in any order and run ahead (here 4 parts past the last step taken, into epoch 4): each
    # worker decoded each of its parts and nothing but its own parts of the epochs that follow
    further = one_process_batches(count, epochs + 3)
    for worker in (0, 1):
        calls = Counter(tuple(indices) for indices in decoded[worker])
        taken = Counter(tuple(part) for part in shares[worker])
        assert not taken - calls, f"worker {worker} never decoded {list(taken - calls)}"
        own = {tuple(np.array_split(batch, 2)[worker]) for batch in further}
        assert set(calls) <= own, f"worker {worker} decoded {sorted(set(calls) - own)}"
    tf.random.set_seed(7)  # worker 1 started again after epoch 1
    model = SimpleNamespace(distribute_strategy=WorkerOfTwo(1))
    resumed = training_data(
        model, files, np.arange(count), BATCH_SIZE, True, replicas=2, first_epoch=1
    )
    for step, (_, labels) in enumerate(resumed["x"].take(3)):
        np.testing.assert_array_equal(labels, shares[1][3 + step])


def test_a_pass_in_order_is_shared_alike_and_counted_in_global_batches(tmp_path: Path) -> None:
    """Validation and scoring after training: one pass over 23 photos in order, in batches of
    10, each cut between the workers as in training, and counted as 3 steps (Keras runs a
    finite pass for as many steps as its dataset says it has)."""
    count = 23
    files = photo_files(tmp_path / "photos", count)
    shares = {}
    for worker in (0, 1):
        dataset = files.batches(BATCH_SIZE, np.arange(count), strategy=WorkerOfTwo(worker))
        assert int(dataset.cardinality()) == 3
        shares[worker] = []
        for pixels, labels in dataset:
            np.testing.assert_array_equal(pixels, files.decode(labels.numpy()))
            shares[worker].append(labels.numpy())
    assert [share.tolist() for share in shares[0]] == [
        [0, 1, 2, 3, 4],
        [10, 11, 12, 13, 14],
        [20, 21],
    ]
    assert [share.tolist() for share in shares[1]] == [[5, 6, 7, 8, 9], [15, 16, 17, 18, 19], [22]]


SPEC = {
    "name": "photos",
    "seed": 5,
    "dataset": {
        "images": {"train": "photos", "image_size": [16, 16], "cache": "none"},
        "validation_split": 0.2,
        "test_split": 0.2,
    },
    "model": {
        "input": [16, 16, 3],
        "layers": [
            {"Rescaling": {"scale": 1 / 255}},
            {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
            "Flatten",
            {"Dense": {"units": 2, "activation": "softmax"}},
        ],
    },
    "compile": {
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
    },
    "fit": {"epochs": 2, "batch_size": 6},
    "output": {"onnx": False},
}


def test_two_local_workers_train_a_streamed_folder_each_decoding_its_part(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    """`dlcli train --workers 2` on 40 streamed photos (26 to train on, in batches of 6, the
    last of 2): each worker says it decodes its own part of every batch, both end with the
    weights the chief saved, and Keras never runs out of a worker's data."""
    write_photos(tmp_path / "photos", count=20)
    (tmp_path / "photos.yaml").write_text(yaml.safe_dump(SPEC))
    ran = run_cli(["train", "photos.yaml", "--workers", "2"], user_env, tmp_path, timeout=240)
    assert ran.returncode == 0, ran.stderr[-3000:]
    for worker in (0, 1):
        assert (
            f"worker {worker} | Image files sharded: each of the 2 workers decodes only its own "
            "part of every batch"
        ) in ran.stderr.splitlines()
    assert "worker 0 | Data: photos (train 26, test 8, validation 6)" in ran.stderr
    assert "Warning" not in ran.stderr, ran.stderr  # e.g. "Your input ran out of data"
    digests = dict(WEIGHTS.findall(ran.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], ran.stderr
    assert weights_digest(tmp_path / "runs" / "photos-1" / "model.keras") == digests["0"]
    history = (tmp_path / "runs" / "photos-1" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history] == ["epoch", "1", "2"]
    assert re.search(r"^worker 0 \| On the test set: accuracy \d\.\d+", ran.stdout, re.M)


def test_a_streamed_folder_trains_under_mixed_precision(tmp_path: Path) -> None:
    """The policy `select_device` sets on GPUs (mixed_float16, and float32 outputs): a
    streamed folder's uint8 pixels train through dlcli's compiled executions and through
    Keras's own loop (the one several workers use), the layers computing in float16, the
    outputs in float32, the loss finite."""
    import keras

    from dlcli.model.build import build_model, compile_model
    from dlcli.spec.load import load_spec
    from dlcli.train.loop import training_data

    (tmp_path / "photos.yaml").write_text(yaml.safe_dump(SPEC))
    spec = load_spec(tmp_path / "photos.yaml", [])
    files = photo_files(tmp_path / "photos", 12)
    labels = np.repeat([0, 1], 6)  # cat/ then dog/
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for fused in (True, False):
            model = build_model(spec.model, spec.name, float32_outputs=True, base_dir=tmp_path)
            compile_model(model, spec, steps_per_execution=2)
            data = training_data(model, files, labels, 4, True, replicas=1, fused=fused)
            loss = model.fit(**data, epochs=1, verbose=0).history["loss"][0]
            predicted = model.predict(files.batches(4), verbose=0)
            assert [layer.compute_dtype for layer in model.layers] == ["float16"] * 3 + ["float32"]
            assert predicted.dtype == np.float32
            assert np.isfinite(loss) and np.isfinite(predicted).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")
