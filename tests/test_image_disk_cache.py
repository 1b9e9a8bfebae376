"""Photo folders decoded once into dlcli's cache folder (`dataset.images.cache: disk`): the
weights of the images held in memory, the file read again by later runs, and a run killed with
SIGKILL while it writes the file leaves nothing that a later run would use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from .helpers import home_env, invoke, write_bars


def spec(cache: str, bars: Path) -> str:
    """A small convnet with Dropout on the 8x8 bar images in `bars`, 3 epochs."""
    return yaml.safe_dump(
        {
            "name": f"bars-{cache}",
            "seed": 4,
            "dataset": {
                "images": {
                    "train": str(bars / "train"),
                    "test": str(bars / "test"),
                    "image_size": [8, 8],
                    "color_mode": "grayscale",
                    "cache": cache,
                },
                "validation_split": 0.25,
            },
            "model": {
                "input": [8, 8, 1],
                "layers": [
                    {"Rescaling": {"scale": 1 / 255}},
                    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
                    "Flatten",
                    {"Dropout": {"rate": 0.25}},
                    {"Dense": {"units": 3, "activation": "softmax"}},
                ],
            },
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {"epochs": 3, "batch_size": 8},
            "output": {"onnx": False},
        }
    )


def weights(run: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(run / "model.keras").get_weights()


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_disk_cache_trains_to_the_weights_in_memory_and_survives_a_kill_while_written(
    isolated: Path,
) -> None:
    """SIGKILL (strace's fault injection) as the files are decoded into the cache: no cache
    file under its name, only the temporary one. The next run writes the file whole and trains
    to bitwise the weights of the images held in memory; the run after reads that file (the
    same inode) to the same weights, and `dlcli evaluate` reads it too."""
    write_bars(isolated / "bars")
    for cache in ("memory", "disk"):
        (isolated / f"{cache}.yaml").write_text(spec(cache, isolated / "bars"))
    held = invoke(["train", "memory.yaml", "--quiet"])
    assert held.exit_code == 0, held.output
    cached = Path(isolated.parent / f"{isolated.name}-dlcli-cache") / "images"
    assert not cached.exists()

    # A file is opened once to check it, then twice as it is decoded into the cache (its bytes,
    # then its pixels), on one thread: the second opening is in the middle of the writing.
    # (strace counts per thread, and matches a path only as the program gives it: absolute.)
    photo = isolated / "bars" / "train" / "middle" / "5.png"
    strace = ["strace", "-f", "-qq", f"-P{photo}", "-e", "trace=openat"]
    strace += ["-e", "inject=openat:signal=KILL:when=2", "--"]
    killed = subprocess.run(
        [*strace, sys.executable, "-m", "dlcli", "train", "disk.yaml", "--quiet"],
        cwd=isolated,
        env=home_env(isolated / "home", TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    (partial,) = cached.iterdir()
    assert partial.name.startswith(".") and partial.name.endswith(".npy.tmp.npy")

    written = invoke(["train", "disk.yaml", "--quiet"])
    assert written.exit_code == 0, written.output
    (kept,) = (path for path in cached.iterdir() if not path.name.startswith("."))
    assert np.load(kept, mmap_mode="r").shape == (49, 8, 8, 1)
    inode = kept.stat().st_ino
    read = invoke(["train", "disk.yaml", "--quiet"])
    assert read.exit_code == 0, read.output
    assert kept.stat().st_ino == inode  # read, not written again
    runs = isolated / "runs"
    for run in ("bars-disk-1", "bars-disk-2"):
        for a, b in zip(weights(runs / run), weights(runs / "bars-memory-1"), strict=True):
            np.testing.assert_array_equal(a, b)
    evaluated = invoke(["evaluate", str(runs / "bars-disk-2" / "model.keras"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert kept.stat().st_ino == inode
