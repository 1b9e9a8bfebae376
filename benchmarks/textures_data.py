"""Write configs/data/textures/{train,test}/{brick,grass,gravel}/*.png from the scikit-image wheel.

scikit-image ships three 512x512 grayscale photos of textures, each under the Creative Commons
CC0 licence (public domain): `brick.png` (a brick wall, from CC0Textures' Bricks25), `grass.png`
(grass, from DeviantArt user linolafett, Grass-01) and `gravel.png` (gravel, from CC0Textures'
Gravel04). The wheel is fetched with pip (your pip configuration and mirrors apply) and read as
a zip: it is never installed or imported. Each photo is checked by sha256 and cut into 32x32
tiles that do not overlap: the top three quarters (12 rows of 16 tiles) for training, the bottom
quarter (4 rows) for the test, so that no test pixel was seen in training.

    .venv/bin/python benchmarks/textures_data.py
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from wheel_data import wheel_members

WHEEL = "scikit-image==0.26.0"
SHA256 = {
    "brick": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "grass": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "gravel": "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
}
TILE = 32
TRAIN_ROWS = 12  # of the 16 rows of tiles; the other 4 are the test's
DATA = Path(__file__).resolve().parents[1] / "configs" / "data" / "textures"


def main() -> None:
    members = {f"skimage/data/{name}.png": digest for name, digest in SHA256.items()}
    photos = wheel_members(WHEEL, members)
    shutil.rmtree(DATA, ignore_errors=True)
    for name in SHA256:
        data = photos[f"skimage/data/{name}.png"]
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        rows, columns = pixels.shape[0] // TILE, pixels.shape[1] // TILE
        for row in range(rows):
            split = "train" if row < TRAIN_ROWS else "test"
            (DATA / split / name).mkdir(parents=True, exist_ok=True)
            for column in range(columns):
                tile = pixels[row * TILE : (row + 1) * TILE, column * TILE : (column + 1) * TILE]
                Image.fromarray(tile).save(DATA / split / name / f"{row:02}_{column:02}.png")
        test_tiles = (rows - TRAIN_ROWS) * columns
        print(f"{name}: {TRAIN_ROWS * columns} training and {test_tiles} test tiles")


if __name__ == "__main__":
    main()
