"""A large CSV table: `dlcli train` against pandas `read_csv` + the same Keras model.

Writes a table of 1,000,000 rows x 20 columns (an integer label 0..9 and 19 float features,
seeded), then runs benchmarks/baseline_csv.py and `dlcli train` on it alternately, each a whole
process for one epoch (the order swapped from pair to pair), and reports the median wall time,
peak RSS and their ratios dlcli / baseline. Targets: wall <= 0.8x, peak RSS <= 1.0x.

    .venv/bin/python benchmarks/csv_scale.py [--rows N] [--pairs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, checked, measure

FEATURES = 19
TARGETS = {"wall_ratio": 0.8, "rss_ratio": 1.0}
SPEC = """\
name: csv-scale
seed: 42
dataset:
  csv: {train: table.csv, label: label}
model:
  input: [19]
  layers:
    - Dense: {units: 32, activation: relu}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 1
  batch_size: 1024
output:
  onnx: false
"""


def write_table(path: Path, rows: int) -> None:
    """The table, written through pyarrow (fast), floats with 6 significant digits."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    generator = np.random.default_rng(42)
    features = generator.normal(size=(rows, FEATURES)).astype(np.float32)
    label = (features[:, :3].sum(axis=1) > 0).astype(np.int64) + 2 * (features[:, 3] > 1)
    columns = {"label": pa.array(label)}
    for index in range(FEATURES):
        columns[f"f{index}"] = pa.array(np.round(features[:, index], 5))
    arrow_csv.write_csv(pa.table(columns), path)


def run_pairs(rows: int, pairs: int) -> dict[str, Any]:
    """Alternating whole-process runs; the medians, ratios and whether the targets are met."""
    with tempfile.TemporaryDirectory(prefix="dlcli-csv-scale-") as name:
        return _run_pairs(Path(name), rows, pairs)


def _run_pairs(folder: Path, rows: int, pairs: int) -> dict[str, Any]:
    table = folder / "table.csv"
    write_table(table, rows)
    (folder / "spec.yaml").write_text(SPEC)
    dlcli = [str(Path(sys.executable).parent / "dlcli"), "train", "spec.yaml"]
    baseline = [sys.executable, str(REPO / "benchmarks" / "baseline_csv.py"), str(table)]
    runs: dict[str, list[Any]] = {"baseline": [], "dlcli": []}
    for pair in range(pairs):
        order = ["baseline", "dlcli"] if pair % 2 == 0 else ["dlcli", "baseline"]
        for side in order:
            command = baseline if side == "baseline" else dlcli
            runs[side].append(checked(measure(command, cwd=folder), side))
    medians = {
        side: {
            "wall_s": statistics.median(run.wall for run in done),
            "rss_mb": statistics.median(run.rss_mb for run in done),
        }
        for side, done in runs.items()
    }
    ratios = {
        "wall": medians["dlcli"]["wall_s"] / medians["baseline"]["wall_s"],
        "peak_rss": medians["dlcli"]["rss_mb"] / medians["baseline"]["rss_mb"],
    }
    return {
        "rows": rows,
        "columns": FEATURES + 1,
        "pairs": pairs,
        "table_mb": table.stat().st_size / 1e6,
        "medians": medians,
        "walls": {side: [round(run.wall, 2) for run in done] for side, done in runs.items()},
        "ratios": ratios,
        "targets": {
            "wall": ratios["wall"] <= TARGETS["wall_ratio"],
            "peak_rss": ratios["peak_rss"] <= TARGETS["rss_ratio"],
        },
    }


def report(result: dict[str, Any]) -> str:
    base, ours = result["medians"]["baseline"], result["medians"]["dlcli"]
    ratios = result["ratios"]
    return (
        f"CSV {result['rows']:,} rows x {result['columns']} columns ({result['table_mb']:.0f} MB),"
        f" 1 epoch, median of {result['pairs']} alternating pair(s):\n"
        f"  wall  pandas+Keras {base['wall_s']:.2f} s, dlcli {ours['wall_s']:.2f} s, ratio "
        f"{ratios['wall']:.2f} (target <= {TARGETS['wall_ratio']})\n"
        f"  peak RSS  pandas+Keras {base['rss_mb']:.0f} MB, dlcli {ours['rss_mb']:.0f} MB, "
        f"ratio {ratios['peak_rss']:.2f} (target <= {TARGETS['rss_ratio']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    result = run_pairs(arguments.rows, arguments.pairs)
    print(report(result))
    if arguments.output:
        arguments.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
