"""Write configs/data/penguins_{train,test}.csv from the `palmerpenguins` wheel (data CC0).

The wheel is fetched with pip (your pip configuration and mirrors apply) and read as a zip: it
is never installed or imported. Its `penguins.csv` is checked by sha256, R's `NA` cells become
empty cells, and the 344 rows are split 80/20 by a permutation seeded 42.

    .venv/bin/python benchmarks/penguins_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from wheel_data import wheel_member

WHEEL = "palmerpenguins==0.1.6"
MEMBER = "palmerpenguins/data/penguins.csv"
SHA256 = "f204db2c753b0937caac3cb35258562c14f073e4bbc76be24b4c51ce22767a93"
DATA = Path(__file__).resolve().parents[1] / "configs" / "data"
SEED = 42
TEST_FRACTION = 0.2


def main() -> None:
    text = wheel_member(WHEEL, MEMBER, SHA256)
    header, *rows = text.decode("utf-8").splitlines()
    rows = [",".join("" if cell == "NA" else cell for cell in row.split(",")) for row in rows]
    order = np.random.default_rng(SEED).permutation(len(rows))
    cut = len(rows) - round(len(rows) * TEST_FRACTION)
    for name, part in (("train", order[:cut]), ("test", order[cut:])):
        lines = [header, *(rows[index] for index in sorted(part))]
        (DATA / f"penguins_{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"configs/data/penguins_{name}.csv: {len(part)} rows")


if __name__ == "__main__":
    main()
