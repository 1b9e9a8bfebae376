"""configs/sunspots.yaml next to classical forecasts on the very same test windows.

The windows are dlcli's own (`load_dataset` on the config's `dataset`), so every forecast is
scored on the same targets: the last value of the window (persistence), the value one solar
cycle (11 years) before the target (seasonal naive), and a least-squares linear regression
on the training windows (an autoregression of order `sequence_length`). Then the config is
trained through the CLI once per seed, and its test MAE read from each run's metrics.json.

    .venv/bin/python benchmarks/sunspots_baseline.py [--seeds 1 2 3 42]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sunspots.yaml"
CYCLE = 11  # years of a solar cycle, roughly


def baselines() -> dict[str, float]:
    """The test MAE of each classical forecast, on the config's test windows."""
    from dlcli.data.load import load_dataset
    from dlcli.spec.load import load_spec

    spec = load_spec(CONFIG)
    splits = load_dataset(spec.dataset, CONFIG.parent, spec.seed or 0)
    windows = spec.dataset.csv.windows if spec.dataset.csv else None
    assert windows is not None and windows.sampling_rate == 1
    target_position = windows.sequence_length - 1 + windows.delay  # in the window's rows
    train, test = splits.train, splits.test  # windows gathered in memory: a few hundred
    x_train, y_train = train.x.decode(np.arange(len(train)))[:, :, 0], train.y
    x_test, y_test = test.x.decode(np.arange(len(test)))[:, :, 0], test.y
    weights, *_ = np.linalg.lstsq(np.c_[x_train, np.ones(len(x_train))], y_train, rcond=None)
    forecasts = {
        "last value (persistence)": x_test[:, -1],
        f"seasonal naive ({CYCLE} years before the target)": x_test[:, target_position - CYCLE],
        "linear regression on the windows": np.c_[x_test, np.ones(len(x_test))] @ weights,
        "training mean": np.full(len(y_test), y_train.mean()),
    }
    print(f"{len(y_test)} test windows, {len(y_train)} training windows")
    return {name: float(np.abs(forecast - y_test).mean()) for name, forecast in forecasts.items()}


def dlcli_mae(seed: int, folder: Path) -> float:
    """The config's test MAE, trained through the CLI with `seed`."""
    command = [sys.executable, "-m", "dlcli", "train", str(CONFIG), "--set", f"seed={seed}"]
    command += ["--set", f"output.dir={folder / str(seed)}"]
    subprocess.run(
        command, check=True, capture_output=True, env={**os.environ, "HOME": str(folder)}
    )
    (metrics,) = (folder / str(seed)).glob("*/metrics.json")
    return float(json.loads(metrics.read_text())["test"]["mae"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 42])
    arguments = parser.parse_args()
    for name, mae in baselines().items():
        print(f"{name}: test MAE {mae:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        maes = [dlcli_mae(seed, Path(folder)) for seed in arguments.seeds]
    listed = ", ".join(f"{mae:.2f}" for mae in maes)
    print(
        f"dlcli configs/sunspots.yaml: test MAE median {statistics.median(maes):.2f} "
        f"(seeds {', '.join(map(str, arguments.seeds))}: {listed})"
    )


if __name__ == "__main__":
    main()
