"""A classical baseline for configs/photos_transfer.yaml: logistic regression on the pixels.

Trained on configs/data/textures/train, scored on configs/data/textures/test (the tiles dlcli
trains and tests on), each 32x32 tile downscaled to 16x16 by Pillow's area averaging and its
256 gray values scaled to [0, 1] and standardized. scikit-learn is a development tool here,
not a dependency.

    .venv/bin/pip install scikit-learn && .venv/bin/python benchmarks/textures_baseline.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DATA = Path(__file__).resolve().parents[1] / "configs" / "data" / "textures"
SIDE = 16


def tiles(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, one row per tile; class names) of a split's folder."""
    paths = sorted((DATA / split).glob("*/*.png"))
    pixels = [
        np.asarray(Image.open(path).convert("L").resize((SIDE, SIDE), Image.Resampling.BOX))
        for path in paths
    ]
    return np.stack(pixels).reshape(len(paths), -1) / 255.0, np.array(
        [p.parent.name for p in paths]
    )


def main() -> None:
    (x_train, y_train), (x_test, y_test) = tiles("train"), tiles("test")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x_train, y_train)
    accuracy = (model.predict(x_test) == y_test).mean()
    print(f"LogisticRegression on {SIDE}x{SIDE} pixels, {len(y_test)} test tiles: {accuracy:.4f}")


if __name__ == "__main__":
    main()
