"""Many epochs of a tiny table: `dlcli train` against plain Keras `model.fit`, whole process.

Two cases, each timed in alternating runs (the order rotated from pair to pair, so that no side
always runs on a warmer or quieter machine):

- iris, 200 epochs: configs/data/iris_train.csv, batches of 16, Normalization + Dense 8 (relu)
  + Dense 3 (softmax), Adam 0.01, sparse categorical cross-entropy, scored on iris_test.csv.
  (The issue says "Dense 1"; iris has three classes, and one sigmoid or linear unit would
  either not train a 3-class label or treat the classes as numbers, so the output is the
  three-unit softmax any classifier of iris has.)
- xor: configs/xor.yaml as shipped (100 epochs of the 4 points, batches of 4).

Each against benchmarks/baseline_tiny.py (the same model, data, epochs and batch size through
`model.fit` and `model.evaluate`), and beside them: dlcli with one epoch per execution (`--set
compile.steps_per_execution=1`, the path these specs took before epochs were fused), and the
floor, a process that only imports TensorFlow and Keras and ends, as dlcli does, without
Python's teardown. Reports the medians and the median of
the pairs' ratios (dlcli / plain Keras; target <= 0.4), dlcli's own fit and total seconds, and
the load average.

    .venv/bin/python benchmarks/tiny_epochs.py [--pairs N] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, checked, measure

TARGET = 0.4
IRIS_SPEC = """\
name: iris
seed: 42
dataset:
  csv: {train: iris_train.csv, test: iris_test.csv, label: species}
model:
  input: [4]
  layers:
    - Normalization
    - Dense: {units: 8, activation: relu}
    - Dense: {units: 3, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 200
  batch_size: 16
"""
SIDES = ("plain_keras", "dlcli", "dlcli_epoch_per_execution", "import_floor")


def commands(case: str, folder: Path) -> dict[str, list[str]]:
    """What each side runs, in `folder` (which holds the iris spec and its data)."""
    spec = "iris.yaml" if case == "iris" else str(REPO / "configs" / "xor.yaml")
    dlcli = [str(Path(sys.executable).parent / "dlcli"), "train", spec, "--set", "output.dir=runs"]
    return {
        "plain_keras": [sys.executable, str(REPO / "benchmarks" / "baseline_tiny.py"), case, "."],
        "dlcli": dlcli,
        "dlcli_epoch_per_execution": [*dlcli, "--set", "compile.steps_per_execution=1"],
        # as dlcli ends: no Python teardown of TensorFlow's modules (seconds on a busy machine)
        "import_floor": [sys.executable, "-c", "import os, tensorflow, keras; os._exit(0)"],
    }


def run_case(case: str, pairs: int, folder: Path) -> dict[str, Any]:
    """`pairs` rounds of every side, the order rotated each round; medians and ratios."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for round_number in range(pairs):
        order = SIDES[round_number % len(SIDES) :] + SIDES[: round_number % len(SIDES)]
        for side in order:
            run = checked(measure(commands(case, folder)[side], cwd=folder), f"{case} {side}")
            figures = {"wall": run.wall, "cpu": run.cpu, "others_cpu": run.others_cpu}
            if side.startswith("dlcli"):
                newest = max((folder / "runs").glob("*-*"), key=lambda path: path.stat().st_mtime)
                metrics = json.loads((newest / "metrics.json").read_text())
                figures |= {"fit": metrics["fit_seconds"], "total": metrics["total_seconds"]}
                figures["accuracy"] = metrics[metrics["evaluated_on"]]["accuracy"]
            elif side == "plain_keras":
                result = json.loads(run.stdout.strip().splitlines()[-1])
                figures |= {"fit": result["fit_seconds"], "accuracy": result["accuracy"]}
            runs[side].append(figures)
            print(f"  {case} round {round_number + 1} {side:26} wall {run.wall:6.2f} s", flush=True)
    medians = {
        side: {key: statistics.median(run[key] for run in done) for key in done[0]}
        for side, done in runs.items()
    }
    base = runs["plain_keras"]

    def ratio(side: str, key: str = "wall") -> float:
        return statistics.median(
            ours[key] / theirs[key] for ours, theirs in zip(runs[side], base, strict=True)
        )

    ratios = {
        "dlcli_wall": ratio("dlcli"),
        "dlcli_fit": ratio("dlcli", "fit"),
        "dlcli_epoch_per_execution_wall": ratio("dlcli_epoch_per_execution"),
        "dlcli_epoch_per_execution_fit": ratio("dlcli_epoch_per_execution", "fit"),
        "import_floor_wall": ratio("import_floor"),
    }
    return {
        "rounds": pairs,
        "medians": medians,
        "ratios_median_of_rounds": ratios,
        "target_met": ratios["dlcli_wall"] <= TARGET,
        "runs": runs,
    }


def report(case: str, result: dict[str, Any]) -> str:
    medians, ratios = result["medians"], result["ratios_median_of_rounds"]
    lines = [f"{case}: medians of {result['rounds']} round(s), whole process"]
    for side in SIDES:
        row = medians[side]
        extra = f", fit {row['fit']:.2f} s" if "fit" in row else ""
        extra += f", dlcli total {row['total']:.2f} s" if "total" in row else ""
        extra += f", accuracy {row['accuracy']:.3f}" if "accuracy" in row else ""
        lines.append(f"  {side:28} wall {row['wall']:6.2f} s{extra}")
    lines.append(
        f"  dlcli / plain Keras: wall {ratios['dlcli_wall']:.2f} (target <= {TARGET}), "
        f"fit {ratios['dlcli_fit']:.2f}; one epoch per execution: wall "
        f"{ratios['dlcli_epoch_per_execution_wall']:.2f}, fit "
        f"{ratios['dlcli_epoch_per_execution_fit']:.2f}; the import floor: "
        f"{ratios['import_floor_wall']:.2f} (median of the rounds' ratios)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="rounds of every side, per case")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results-tiny.json")
    arguments = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="dlcli-tiny-epochs-") as name:
        folder = Path(name)
        for split in ("train", "test"):
            shutil.copy(REPO / "configs" / "data" / f"iris_{split}.csv", folder)
        (folder / "iris.yaml").write_text(IRIS_SPEC)
        for case in ("iris", "xor"):
            results[case] = run_case(case, arguments.pairs, folder)
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    for case in ("iris", "xor"):
        print(report(case, results[case]))
    print(f"load average before {load_before}, after {results['load_average']['after']}")
    print(f"results: {arguments.output}")


if __name__ == "__main__":
    main()
