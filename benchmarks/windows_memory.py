"""Peak memory of `dlcli train` on time windows the size of the book's Jena climate example.

Writes a seeded series of 420,551 rows x 14 float columns (sums of sines of daily and yearly
periods, plus noise: the size and shape of the Jena climate file of "Deep Learning with
Python", chapter 10), then trains 1 epoch of the book's windows on it through `dlcli train`
in a subprocess: sequence_length 120, sampling_rate 6 (one row an hour of 10-minute rows),
delay 144 (the temperature 24 hours after the window's last row), batch_size 256, half the
rows for training, a quarter each for validation and test; a small model (Flatten, Dense 16,
Dense 1). Reports the process's peak RSS (its rusage, `bench.measure`), its wall time and the
bytes the windows of all three splits would take held as arrays.

`--source` runs the dlcli package of another source tree (on PYTHONPATH), e.g. main's, taken
without a checkout: `git archive main dlcli | tar -x -C /tmp/main-dlcli`.

    .venv/bin/python benchmarks/windows_memory.py [--rows N] [--source DIR] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import checked, measure

JENA_ROWS = 420_551
COLUMNS = [f"c{index}" for index in range(13)] + ["T"]  # T: the temperature, forecast
ROWS_A_DAY = 144  # one row every 10 minutes
SEQUENCE_LENGTH, SAMPLING_RATE, DELAY, BATCH_SIZE = 120, 6, 144, 256
SPEC = f"""\
name: windows-memory
seed: 42
dataset:
  csv:
    train: series.csv
    windows:
      sequence_length: {SEQUENCE_LENGTH}
      sampling_rate: {SAMPLING_RATE}
      target: T
      delay: {DELAY}
  validation_split: 0.25
  test_split: 0.25
model:
  layers:
    - Flatten
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: 1}}
compile:
  optimizer: rmsprop
  loss: mse
  metrics: [mae]
fit:
  epochs: 1
  batch_size: {BATCH_SIZE}
output:
  onnx: false
"""


def write_series(path: Path, rows: int) -> None:
    """The series: each column a sum of a daily and a yearly sine (phases and scales of its
    own) and Gaussian noise, seeded; written through pyarrow, 4 decimals."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    generator = np.random.default_rng(42)
    time = np.arange(rows, dtype=np.float64)
    columns = {}
    for name in COLUMNS:
        daily, yearly, scale = generator.uniform(0, 2 * np.pi, 2).tolist() + [
            float(generator.uniform(1, 10))
        ]
        values = scale * (
            np.sin(2 * np.pi * time / ROWS_A_DAY + daily)
            + 2 * np.sin(2 * np.pi * time / (365.25 * ROWS_A_DAY) + yearly)
        )
        values += generator.normal(scale=0.3 * scale, size=rows)
        columns[name] = pa.array(np.round(values, 4))
    arrow_csv.write_csv(pa.table(columns), path)


def windows_bytes(rows: int) -> int:
    """The bytes of every split's windows held as float32 arrays (as dlcli held them before
    windows were gathered a batch at a time)."""
    span = (SEQUENCE_LENGTH - 1) * SAMPLING_RATE + 1 + DELAY
    held = round(rows * 0.25)
    splits = [rows - 2 * held, held, held]
    return sum(max(count - span + 1, 0) for count in splits) * SEQUENCE_LENGTH * len(COLUMNS) * 4


def train_once(rows: int, source: Path | None) -> dict[str, Any]:
    """`dlcli train` of the spec on a new series of `rows` rows, with dlcli from `source`."""
    with tempfile.TemporaryDirectory(prefix="dlcli-windows-memory-") as name:
        folder = Path(name)
        write_series(folder / "series.csv", rows)
        (folder / "spec.yaml").write_text(SPEC)
        env = {**os.environ, "HOME": str(folder / "home")}
        if source is not None:
            env["PYTHONPATH"] = str(source.resolve())
        command = [sys.executable, "-m", "dlcli", "train", "spec.yaml"]
        run = checked(measure(command, env=env, cwd=folder), "dlcli train")
        (metrics,) = (folder / "runs").glob("*/metrics.json")
        return {
            "rows": rows,
            "series_mb": round((folder / "series.csv").stat().st_size / 1e6, 1),
            "windows_mb": round(windows_bytes(rows) / 1e6, 1),
            "peak_rss_mb": round(run.rss_mb, 1),
            "wall_s": round(run.wall, 1),
            "test_mae": json.loads(metrics.read_text())["test"]["mae"],
            "source": str(source or "this tree"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=JENA_ROWS)
    parser.add_argument("--source", type=Path, default=None, help="a tree holding dlcli/")
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    result = train_once(arguments.rows, arguments.source)
    print(
        f"{result['rows']:,} rows x {len(COLUMNS)} columns ({result['series_mb']} MB of CSV), "
        f"windows of all splits {result['windows_mb']:,} MB as arrays; dlcli from "
        f"{result['source']}: peak RSS {result['peak_rss_mb']:,} MB, wall {result['wall_s']} s, "
        f"test MAE {result['test_mae']:.4f}"
    )
    if arguments.output:
        arguments.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
