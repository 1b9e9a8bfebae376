"""Shared fixtures: every test runs in its own folder with its own dlcli cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run folder, dlcli cache and Keras home point at tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLCLI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def synthetic_dataset(name: str, rows: int = 64) -> tuple[tuple, tuple]:
    """Learnable stand-ins with the shapes and dtypes of `keras.datasets.<name>.load_data()`."""
    rng = np.random.default_rng(0)
    shapes = {
        "mnist": ((28, 28), 10),
        "fashion_mnist": ((28, 28), 10),
        "cifar10": ((32, 32, 3), 10),
        "cifar100": ((32, 32, 3), 100),
    }
    if name in shapes:
        shape, classes = shapes[name]
        y = rng.integers(0, classes, size=rows).astype("uint8")
        x = rng.integers(0, 60, size=(rows, *shape)).astype("uint8")
        x[np.arange(rows), y % shape[0]] = 255  # the label is written into the image
    elif name in ("imdb", "reuters"):
        classes = 2 if name == "imdb" else 46
        y = rng.integers(0, classes, size=rows).astype("int64")
        x = np.empty(rows, dtype=object)
        for row in range(rows):
            x[row] = [1, int(y[row]) + 2, *rng.integers(3, 500, size=20).tolist()]
    else:
        features = 13 if name == "boston_housing" else 8
        x = rng.normal(size=(rows, features)) * 10 + 50
        y = x[:, 0] * 0.5 + rng.normal(size=rows)
    cut = rows * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


@pytest.fixture
def fake_keras_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """keras.datasets without the network: synthetic arrays of the same shapes."""
    from dlcli.data import keras_datasets

    monkeypatch.setattr(keras_datasets, "fetch", lambda spec: synthetic_dataset(spec.name))
