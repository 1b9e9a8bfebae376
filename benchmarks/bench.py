"""`make bench`: dlcli against plain Keras scripts of the same work, on this machine, in one run.

Trains the book's two MNIST networks both ways, alternately (the order swapped from pair to pair
so that neither side always runs on a warmer machine): the MLP (configs/mnist.yaml against
benchmarks/baseline_mnist.py) and the convnet (configs/mnist_cnn.yaml against
benchmarks/baseline_convnet.py). For each it reports the median of the whole process's wall
time, CPU time, `fit` time, training samples per second, test accuracy and peak RSS, the ratios
dlcli/baseline, and dlcli's first epoch's extra time over its later ones (tracing and
compiling). For the MLP also the compute floor: its training FLOPs divided by the best
matrix-multiply throughput measured here, probed before the first pair and after each one.

Also timed, each against what a user would run instead where there is such a thing: `dlcli
--help`, `dlcli validate` on a good and a bad spec, a missing spec file (and whether any of them
imports TensorFlow); `dlcli predict` on 1 and on 1,000 images through Keras and through the
model's ONNX file, against a plain Keras script that decodes the same PNGs and calls
`model.predict`; `dlcli evaluate` against `model.evaluate`; `dlcli train` on a CSV table of
1,000,000 rows x 20 columns against pandas `read_csv` + the same Keras model
(benchmarks/csv_scale.py); `dlcli serve` against a naive FastAPI server calling `model.predict`
per request (benchmarks/serve_load.py).

Usage: python benchmarks/bench.py [--quick] [--pairs N] [--repeats N] [--output PATH]
`--quick`: one pair of each, the convnet for 1 epoch (a few minutes). Prints a table and writes
the results as JSON (default benchmarks/results.json; with --quick, results-quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PYTHON = sys.executable
# The console script users run (its start-up is what they wait for), else `python -m dlcli`.
_SCRIPT = Path(PYTHON).with_name("dlcli")
DLCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [PYTHON, "-m", "dlcli"]


@dataclass(frozen=True)
class Network:
    """A shipped config and the plain Keras script of the same network, data and schedule."""

    spec: Path
    baseline: Path
    epochs: int


# A row of the table `dlcli train` prints at the end (every epoch up to 20): epoch ... time.
EPOCH_ROW = re.compile(r"^│\s*(\d+)(?: \*)? │.*│\s*(\d+(?:\.\d+)?)s │$", re.MULTILINE)

# The book's network and schedule (configs/mnist.yaml, benchmarks/baseline_mnist.py).
LAYER_WIDTHS = (28 * 28, 512, 10)
BATCH_SIZE, EPOCHS, TRAIN_SAMPLES = 128, 5, 60_000
NETWORKS = {
    "mlp": Network(REPO / "configs" / "mnist.yaml", BENCHMARKS / "baseline_mnist.py", EPOCHS),
    "convnet": Network(REPO / "configs" / "mnist_cnn.yaml", BENCHMARKS / "baseline_convnet.py", 5),
}
SPEC = NETWORKS["mlp"].spec
# The matrix products of one training step, (m, k, n) with batch 128: forward through both
# layers, the weight gradients (x^T . dh) and the second layer's input gradient (the first
# layer's is not needed: the data takes no gradient). The probe also times a large square
# product, the machine's best case.
STEP_PRODUCTS = ((128, 784, 512), (128, 512, 10), (784, 128, 512), (512, 128, 10), (128, 10, 512))
PROBE_SHAPES = (*STEP_PRODUCTS, (2048, 2048, 2048))

TARGETS = {
    "convnet_wall_ratio": 0.75,
    "convnet_accuracy_drop": 0.003,
    "wall_ratio": 0.6,
    "fit_ratio": 0.5,
    "accuracy": 0.978,
    "rss_ratio": 1.10,
    "floor_ratio": 2.5,
    "startup_seconds": 0.5,
    "predict_ratio": 2.0,
}
# What TensorFlow prints on its own while it starts: users must not see it.
TF_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub|cpu_feature_guard|oneDNN custom operations|"
    r"^[IWE]\d{4} \d\d:\d\d:\d\d|This TensorFlow binary is optimized",
    re.MULTILINE,
)
BAD_SPEC = """\
name: mnist
dataset:
  name: mnist
model:
  input: [28, 28]
  layers:
    - Flaten
    - Dense: {units: 10, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
fit:
  epochs: 1
"""


@dataclass(frozen=True)
class Run:
    """One child process: wall and CPU seconds, peak resident memory, exit status, output."""

    wall: float
    cpu: float
    rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    steal: float  # share of the machine's CPU time the hypervisor took meanwhile (Linux VMs)
    others_cpu: float  # CPU seconds other processes used meanwhile


TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_ticks() -> list[int]:
    try:
        return [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def measure(command: list[str], *, env: dict[str, str] | None = None, cwd: Path = REPO) -> Run:
    """Run a command to the end; its own rusage gives CPU time and peak RSS (Linux: KiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        ticks = cpu_ticks()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        spent = [after - before for before, after in zip(ticks, cpu_ticks(), strict=True)]
        usage_cpu = usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            wall=wall,
            cpu=usage_cpu,
            rss_mb=usage.ru_maxrss / 1024,
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            steal=spent[7] / max(sum(spent), 1),
            others_cpu=max(0.0, sum(spent[i] for i in (0, 1, 2, 5, 6)) / TICKS - usage_cpu),
        )


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"{what} failed with exit code {run.returncode}:\n{tail}")
    return run


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------
# The compute floor


def training_flops_per_sample(widths: tuple[int, ...] = LAYER_WIDTHS) -> int:
    """Multiply-adds x 2 of one training step per example: forward, weight gradients, and
    input gradients for every layer but the first (the data needs none)."""
    products = [a * b for a, b in zip(widths, widths[1:], strict=False)]
    flops = 2 * (sum(products) + sum(products) + sum(products[1:]))
    assert flops * BATCH_SIZE == sum(2 * m * k * n for m, k, n in STEP_PRODUCTS)
    return flops


def compute_floor(probes: list[dict[str, float]]) -> dict[str, Any]:
    """Training FLOPs / best measured matmul throughput; also at the network's own shapes."""
    best = {shape: max(sample[shape] for sample in probes) for shape in probes[0]}
    peak_shape = max(best, key=best.__getitem__)
    flops = training_flops_per_sample() * TRAIN_SAMPLES * EPOCHS
    steps = EPOCHS * TRAIN_SAMPLES / BATCH_SIZE
    at_shapes = steps * sum(
        2 * m * k * n / (best[f"{m}x{k}x{n}"] * 1e9) for m, k, n in STEP_PRODUCTS
    )
    return {
        "flops_per_sample": training_flops_per_sample(),
        "training_flops": flops,
        "matmul_gflops": probes,
        "best_gflops": best[peak_shape],
        "best_shape": peak_shape,
        "floor_s": flops / (best[peak_shape] * 1e9),
        "floor_at_network_shapes_s": at_shapes,
    }


def probe() -> None:
    """(Child process) best-of-5 TensorFlow matmul GFLOP/s for PROBE_SHAPES, as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rates = {}
    for m, k, n in PROBE_SHAPES:
        repeats = max(4, int(2e9 / (2 * m * k * n)))
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))

        @tf.function
        def products(a: Any, b: Any, repeats: int = repeats) -> Any:
            total = tf.zeros((a.shape[0], b.shape[1]))
            for _ in tf.range(repeats):
                total += tf.matmul(a, b)
            return total

        products(a, b).numpy()
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            products(a, b).numpy()
            best = min(best, time.perf_counter() - started)
        rates[f"{m}x{k}x{n}"] = 2 * m * k * n * repeats / best / 1e9
    print(json.dumps(rates))


def measure_matmul() -> dict[str, float]:
    run = checked(measure([PYTHON, str(Path(__file__).resolve()), "--probe"]), "matmul probe")
    return last_json(run.stdout)


# ---------------------------------------------------------------------------------------------
# Training: baseline and dlcli, alternately


def mnist_cache() -> Path:
    """The cached MNIST arrays both sides read (fetched once if missing)."""
    from dlcli.data.mnist_mirrors import CACHE_FILE_NAME, load_mnist
    from dlcli.utils.cache import cache_dir

    load_mnist(cache_dir())
    return cache_dir() / CACHE_FILE_NAME


def run_baseline(network: Network, mnist: Path, epochs: int) -> dict[str, Any]:
    command = [PYTHON, str(network.baseline), str(mnist), str(epochs)]
    run = checked(measure(command), network.baseline.name)
    result = last_json(run.stdout)
    return {
        **process_figures(run),
        "fit": result["fit_seconds"],
        "accuracy": result["test_accuracy"],
    }


def process_figures(run: Run) -> dict[str, float]:
    """What every training run reports of its process: time, memory and the machine's load."""
    return {
        "wall": run.wall,
        "cpu": run.cpu,
        "rss_mb": run.rss_mb,
        "steal": run.steal,
        "others_cpu": run.others_cpu,
    }


def xla_cache() -> Path:
    from dlcli.utils.cache import cache_dir

    return cache_dir() / "xla"


def run_dlcli(network: Network, runs_dir: Path, epochs: int) -> dict[str, Any]:
    command = [
        *DLCLI,
        "train",
        str(network.spec),
        "--set",
        f"output.dir={runs_dir}",
        "--set",
        f"fit.epochs={epochs}",
    ]
    cache = "warm" if any(xla_cache().glob("*/*")) else "cold"
    run = checked(measure(command), f"dlcli train {network.spec.name}")
    run_dir = max(runs_dir.glob("*-*"), key=lambda path: path.stat().st_mtime)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epoch_seconds = epoch_times(run.stderr)
    return {
        **process_figures(run),
        "fit": metrics["fit_seconds"],
        "accuracy": metrics["test"]["accuracy"],
        "epoch_seconds": epoch_seconds,
        # tracing and compiling: the first epoch's time over the median of the later ones
        "first_epoch_extra": epoch_seconds[0] - median(epoch_seconds[1:])
        if len(epoch_seconds) > 1
        else float("nan"),
        "device": metrics["device"],
        "tf_noise_lines": len(TF_NOISE.findall(run.stderr)),
        "model": str(run_dir / "model.keras"),
        "xla_cache": cache,
    }


def epoch_times(output: str) -> list[float]:
    """Each epoch's seconds, from the table of epochs `dlcli train` prints at the end."""
    return [float(seconds) for _, seconds in EPOCH_ROW.findall(output)]


def train_pairs(
    name: str, pairs: int, epochs: int, mnist: Path, workdir: Path, probes: list | None
) -> dict[str, list[dict[str, Any]]]:
    """`pairs` alternating runs of the baseline and dlcli; a matmul probe after each pair
    when `probes` is a list."""
    network, runs = NETWORKS[name], {"baseline": [], "dlcli": []}
    for pair in range(pairs):
        for side in ("baseline", "dlcli") if pair % 2 == 0 else ("dlcli", "baseline"):
            if side == "baseline":
                run = run_baseline(network, mnist, epochs)
            else:
                run = run_dlcli(network, workdir / f"runs-{name}", epochs)
            runs[side].append(run)
            print(
                f"  {name} pair {pair + 1} {side:8} wall {run['wall']:6.1f}s"
                f"  fit {run['fit']:6.1f}s"
                f"  accuracy {run['accuracy']:.4f}  RSS {run['rss_mb']:,.0f} MB"
                f"  steal {run['steal']:.0%}  others {run['others_cpu']:.0f} CPU-s"
                + (f"  XLA cache {run['xla_cache']}" if "xla_cache" in run else ""),
                flush=True,
            )
        if probes is not None:
            probes.append(measure_matmul())
    return runs


def summarize(runs: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    samples = TRAIN_SAMPLES * epochs
    summary = {
        "wall_s": median([r["wall"] for r in runs]),
        "cpu_s": median([r["cpu"] for r in runs]),
        "fit_s": median([r["fit"] for r in runs]),
        "samples_per_s": median([samples / r["fit"] for r in runs]),
        "accuracy": median([r["accuracy"] for r in runs]),
        "accuracy_min": min(r["accuracy"] for r in runs),
        "peak_rss_mb": median([r["rss_mb"] for r in runs]),
        "runs": runs,
    }
    if "first_epoch_extra" in runs[0]:
        summary["first_epoch_extra_s"] = median([r["first_epoch_extra"] for r in runs])
        summary["tf_noise_lines"] = max(r["tf_noise_lines"] for r in runs)
    return summary


def compare(runs: dict[str, list[dict[str, Any]]], epochs: int) -> dict[str, Any]:
    """Both sides' medians, their ratios, and the median of the per-pair ratios (also of the
    pairs the hypervisor's steal left alone: it slows whichever side it hits)."""
    base, ours = summarize(runs["baseline"], epochs), summarize(runs["dlcli"], epochs)
    pairs = list(zip(runs["baseline"], runs["dlcli"], strict=True))
    per_pair: dict[str, Any] = {
        key: median([mine[key] / theirs[key] for theirs, mine in pairs])
        for key in ("wall", "fit", "cpu")
    }
    quiet = [(theirs, mine) for theirs, mine in pairs if max(theirs["steal"], mine["steal"]) < 0.05]
    per_pair["quiet_pairs"] = len(quiet)
    for key in ("wall", "fit"):
        per_pair[f"quiet_{key}"] = median([mine[key] / theirs[key] for theirs, mine in quiet])
    ratios = {
        "wall": ours["wall_s"] / base["wall_s"],
        "cpu": ours["cpu_s"] / base["cpu_s"],
        "fit": ours["fit_s"] / base["fit_s"],
        "peak_rss": ours["peak_rss_mb"] / base["peak_rss_mb"],
        "median_of_pair_ratios": per_pair,
    }
    return {
        "epochs": epochs,
        "pairs": len(pairs),
        "baseline": base,
        "dlcli": ours,
        "ratios": ratios,
    }


# ---------------------------------------------------------------------------------------------
# Start-up, predict and evaluate


def imports_tensorflow(arguments: list[str]) -> bool:
    run = measure([PYTHON, "-X", "importtime", "-m", "dlcli", *arguments])
    return bool(re.search(r"\|\s+(tensorflow|keras)(\.|$)", run.stderr, re.MULTILINE))


def time_startup(workdir: Path, repeats: int) -> dict[str, Any]:
    bad = workdir / "bad.yaml"
    bad.write_text(BAD_SPEC)
    cases = {
        "help": (["--help"], 0),
        "validate_good": (["validate", str(SPEC)], 0),
        "validate_bad": (["validate", str(bad)], None),
        "missing_spec_file": (["train", str(workdir / "no-such-spec.yaml")], None),
    }
    # As on a default Python, which caches bytecode: this machine's PYTHONDONTWRITEBYTECODE=1
    # would have every run compile dlcli's own modules again (~30 ms); one warm-up run each.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    results: dict[str, Any] = {}
    for name, (arguments, expected) in cases.items():
        runs = [measure([*DLCLI, *arguments], env=env) for _ in range(repeats + 1)][1:]
        codes = {run.returncode for run in runs}
        if (expected is not None and codes != {expected}) or (expected is None and 0 in codes):
            raise SystemExit(f"dlcli {' '.join(arguments)}: unexpected exit codes {codes}")
        results[name] = {
            "wall_s": median([run.wall for run in runs]),
            "cpu_s": median([run.cpu for run in runs]),
            "imports_tensorflow": imports_tensorflow(arguments),
            "output": (runs[-1].stdout + runs[-1].stderr).strip().splitlines()[-1][:160],
        }
    return results


def write_digits(mnist: Path, folder: Path, count: int) -> list[Path]:
    """The first `count` MNIST test images as PNG files (what a user would predict on)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    with np.load(mnist) as arrays:
        images = arrays["x_test"][:count]
    paths = [folder / f"{index:05d}.png" for index in range(count)]
    for image, path in zip(images, paths, strict=True):
        Image.fromarray(image).save(path)
    return paths


# In-process, after the imports (the target's own terms), in one process so that both sides
# see the same machine: dlcli's predict() end to end, and its parts: load the model, decode
# with dlcli's own image code, and Keras's model.predict on the decoded array.
PREDICT_IN_PROCESS = """
import json, sys, time
import keras, numpy as np
from dlcli.model import artifact
from dlcli.inference.predict import (
    IMAGE_SUFFIXES,
    describe_inputs,
    expand_inputs,
    predict,
    read_inputs,
)

def whole():
    started = time.perf_counter()
    predict([sys.argv[2]], model_path=sys.argv[1], top_k=1, runtime_name="keras")
    return {"predict": time.perf_counter() - started}

def parts():
    seconds, started = {}, time.perf_counter()
    loaded = artifact.load(sys.argv[1])
    seconds["load"], started = time.perf_counter() - started, time.perf_counter()
    description, _ = describe_inputs(loaded.model, loaded.metadata, loaded.path)
    files, _ = expand_inputs([sys.argv[2]], IMAGE_SUFFIXES)
    batch = np.concatenate([pixels for _, pixels in read_inputs(files, description, raw=False)])
    seconds["decode"], started = time.perf_counter() - started, time.perf_counter()
    loaded.model.predict(batch, verbose=0)
    seconds["model_predict"] = time.perf_counter() - started
    return seconds

order = (whole, parts) if sys.argv[3] == "whole first" else (parts, whole)
print(json.dumps({key: value for step in order for key, value in step().items()}))
"""


def time_inference(
    model: str, mnist: Path, workdir: Path, repeats: int, *, reuse: bool = False
) -> dict[str, Any]:
    """dlcli predict/evaluate against plain Keras doing the same in a script of its own.

    `reuse` (--quick): a plain Keras command already timed for one case (predict through
    Keras) is not run again for the next (predict through ONNX)."""
    digits = write_digits(mnist, workdir / "digits", 1000)
    plain = [PYTHON, str(BENCHMARKS / "baseline_inference.py"), model]
    predict_1, predict_1000 = [str(digits[0])], [str(digits[0].parent), "--csv"]
    cases: dict[str, tuple[list[str], list[str]]] = {
        "predict_1": (
            [*DLCLI, "predict", *predict_1, "--model", model, "--runtime", "keras"],
            [*plain, "predict", str(digits[0])],
        ),
        "predict_1_onnx": (
            [*DLCLI, "predict", *predict_1, "--model", model, "--runtime", "onnx"],
            [*plain, "predict", str(digits[0])],
        ),
        "predict_1000": (
            [*DLCLI, "predict", *predict_1000, "--model", model, "--runtime", "keras"],
            [*plain, "predict", str(digits[0].parent)],
        ),
        "predict_1000_onnx": (
            [*DLCLI, "predict", *predict_1000, "--model", model, "--runtime", "onnx"],
            [*plain, "predict", str(digits[0].parent)],
        ),
        "evaluate": (
            [*DLCLI, "evaluate", model, "--json", "--output", str(workdir / "evaluation")],
            [*plain, "evaluate", str(mnist)],
        ),
    }
    results: dict[str, Any] = {}
    timed: dict[tuple[str, ...], list[Run]] = {}
    for name, (command, reference) in cases.items():
        known = reuse and tuple(reference) in timed
        ours, theirs = [], list(timed[tuple(reference)]) if known else []
        for _ in range(repeats):  # alternately
            ours.append(checked(measure(command), f"dlcli {name}"))
            if not known:
                theirs.append(checked(measure(reference), f"plain Keras {name}"))
        timed[tuple(reference)] = theirs
        parts = [last_json(run.stdout) for run in theirs]
        results[name] = {
            "dlcli_wall_s": median([run.wall for run in ours]),
            "plain_keras_wall_s": median([run.wall for run in theirs]),
            "plain_keras_in_process_s": {
                key: median([part[key] for part in parts]) for key in parts[0]
            },
            "dlcli_peak_rss_mb": median([run.rss_mb for run in ours]),
            "tf_noise_lines": max(len(TF_NOISE.findall(run.stderr)) for run in ours),
        }
        results[name]["ratio"] = results[name]["dlcli_wall_s"] / results[name]["plain_keras_wall_s"]
    # The target's own terms: predict() = load + decode + at most 2x model.predict.
    folder = str(digits[0].parent)
    samples = []
    for index in range(repeats):
        order = "whole first" if index % 2 else "parts first"
        run = measure([PYTHON, "-c", PREDICT_IN_PROCESS, model, folder, order])
        sample = last_json(checked(run, "predict in-process").stdout)
        sample["ratio"] = (sample["predict"] - sample["load"] - sample["decode"]) / sample[
            "model_predict"
        ]
        samples.append(sample)
    results["predict_1000"]["in_process"] = {
        f"{key}_s" if key != "ratio" else key: median([sample[key] for sample in samples])
        for key in samples[0]
    }
    return results


# ---------------------------------------------------------------------------------------------
# Report


def time_serving(model: Path, workdir: Path, *, quick: bool) -> dict[str, Any]:
    """benchmarks/serve_load.py on the model: `dlcli serve` against the naive server."""
    output = workdir / "serve.json"
    requests = "500" if quick else "2000"
    command = [PYTHON, str(BENCHMARKS / "serve_load.py"), str(model), "--requests", requests]
    subprocess.run([*command, "--output", str(output)], check=True, cwd=REPO, timeout=1800)
    return json.loads(output.read_text())


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    memory_gib = 0.0
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1)  # type: ignore[union-attr]
        flags = re.search(r"flags\s*:\s*(.*)", cpuinfo).group(1).split()  # type: ignore[union-attr]
        cpu += f" ({', '.join(f for f in ('avx512f', 'amx_tile', 'avx512_bf16') if f in flags)})"
        meminfo = Path("/proc/meminfo").read_text()
        memory_gib = int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)) / 2**20  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass

    def package(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    gpu = (
        shutil.which("nvidia-smi")
        and subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "gpu": gpu or None,
        "python": platform.python_version(),
        "tensorflow": package("tensorflow"),
        "keras": package("keras"),
        "environment": {
            key: os.environ[key]
            for key in (
                "TF_ENABLE_ONEDNN_OPTS",
                "TF_XLA_FLAGS",
                "XLA_FLAGS",
                "OMP_NUM_THREADS",
                "PYTHONDONTWRITEBYTECODE",
            )
            if key in os.environ
        },
    }


TITLES = {
    "mlp": "MNIST MLP (configs/mnist.yaml), batch 128",
    "convnet": "MNIST convnet (configs/mnist_cnn.yaml), batch 64",
}


def print_training(name: str, result: dict[str, Any]) -> None:
    base, ours, ratios = result["baseline"], result["dlcli"], result["ratios"]
    rows = [
        ("whole process, wall (s)", "wall_s", "{:.1f}"),
        ("whole process, CPU (s)", "cpu_s", "{:.1f}"),
        ("fit (s)", "fit_s", "{:.1f}"),
        ("training samples/s", "samples_per_s", "{:,.0f}"),
        ("test accuracy (median)", "accuracy", "{:.4f}"),
        ("test accuracy (lowest)", "accuracy_min", "{:.4f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:,.0f}"),
    ]
    print(
        f"\n{TITLES[name]}, {result['epochs']} epochs: medians of {result['pairs']} "
        "alternating pairs"
    )
    print(f"{'':28}{'baseline':>12}{'dlcli':>12}{'dlcli/base':>12}")
    for label, key, form in rows:
        ratio = "" if "accuracy" in key else f"{ours[key] / base[key]:.2f}"
        cells = [form.format(base[key]), form.format(ours[key])]
        print(f"{label:28}{cells[0]:>12}{cells[1]:>12}{ratio:>12}")
    per_pair = ratios["median_of_pair_ratios"]
    print(
        f"{'median of per-pair ratios':28}{'':>24}  wall {per_pair['wall']:.2f}, "
        f"fit {per_pair['fit']:.2f}, CPU {per_pair['cpu']:.2f}"
    )
    print(
        f"{'pairs with steal < 5%':28}{'':>24}  {per_pair['quiet_pairs']}: wall "
        f"{per_pair['quiet_wall']:.2f}, fit {per_pair['quiet_fit']:.2f} (median of their ratios)"
    )
    print(
        f"{'dlcli first epoch, extra (s)':28}{'':>12}{ours['first_epoch_extra_s']:>12.1f}"
        "  over the median of its later epochs: tracing and compiling"
    )
    steal = [run["steal"] for run in base["runs"] + ours["runs"]]
    print(f"CPU time the hypervisor took (steal): {min(steal):.0%}-{max(steal):.0%}")
    print(f"TensorFlow start-up lines shown by dlcli train: {ours['tf_noise_lines']}")


def print_floor(mlp: dict[str, Any]) -> None:
    base, ours, ratios, floor = mlp["baseline"], mlp["dlcli"], mlp["ratios"], mlp["floor"]
    cold = ours.get("first_run_cold_xla_cache")
    if cold:
        print(
            f"dlcli's first MLP run (XLA cache cold): wall {cold['wall']:.1f} s "
            f"({cold['wall'] / base['wall_s']:.2f}); fit {cold['fit']:.1f} s "
            f"({cold['fit'] / base['fit_s']:.2f})"
        )
    print(
        f"compute floor: {floor['training_flops'] / 1e9:.0f} GFLOP (training, "
        f"{floor['flops_per_sample']:,} FLOP/sample) / {floor['best_gflops']:.0f} GFLOP/s "
        f"(best TF matmul here, {floor['best_shape']}) = {floor['floor_s']:.1f} s; "
        f"dlcli fit = {ratios['fit_over_floor']:.2f}x floor, baseline fit = "
        f"{base['fit_s'] / floor['floor_s']:.2f}x"
    )
    print(
        f"  pair by pair, against the probes either side of it: dlcli fit = "
        f"{ratios['median_of_pair_ratios']['fit_over_floor']:.2f}x floor (median)"
    )
    print(
        f"  at the network's own matmul shapes (batch 128): "
        f"{floor['floor_at_network_shapes_s']:.1f} s; dlcli fit = "
        f"{ratios['fit_over_floor_at_network_shapes']:.2f}x, baseline fit = "
        f"{base['fit_s'] / floor['floor_at_network_shapes_s']:.2f}x"
    )


def print_table(results: dict[str, Any]) -> None:
    for name in NETWORKS:
        print_training(name, results["training"][name])
        if name == "mlp":
            print_floor(results["training"]["mlp"])
    print(
        f"device: {results['training']['mlp']['dlcli']['runs'][0]['device']}; "
        f"{results['machine']['cpu']}"
    )
    print("\nstart-up (median wall, s)")
    for name, row in results["startup"].items():
        tf_note = "imports TensorFlow!" if row["imports_tensorflow"] else "no TensorFlow import"
        print(f"  dlcli {name:24}{row['wall_s']:8.3f}   {tf_note}")
    print("\ninference, the MLP's model (median wall of the whole process, s)")
    print(f"  {'':22}{'dlcli':>8}{'plain Keras':>13}{'ratio':>8}   plain Keras in-process")
    for name, row in results["inference"].items():
        inside = ", ".join(f"{k} {v:.2f}" for k, v in row["plain_keras_in_process_s"].items())
        print(
            f"  {name:22}{row['dlcli_wall_s']:8.2f}{row['plain_keras_wall_s']:13.2f}"
            f"{row['ratio']:8.2f}   {inside}"
        )
    inside = results["inference"]["predict_1000"]["in_process"]
    print(
        f"  predict_1000 in-process (after imports, Keras runtime): dlcli predict() "
        f"{inside['predict_s']:.2f} s = load {inside['load_s']:.2f} s + decode "
        f"{inside['decode_s']:.2f} s + {inside['ratio']:.2f} x model.predict "
        f"{inside['model_predict_s']:.2f} s"
    )
    from csv_scale import report

    print("\n" + report(results["csv_table"]))
    serving = results["serving"]
    print(
        f"\nserve, the MLP's model ({serving['requests']} OIP requests, "
        f"{serving['clients']} clients)"
    )
    for name in ("naive", "dlcli", "upload_png_200x200", "upload_png_200x200_4_clients"):
        row = serving[name]
        print(
            f"  {name:30}{row['throughput_rps']:8.1f} req/s  p50 {row['p50_ms']:8.2f} ms  "
            f"p99 {row['p99_ms']:8.2f} ms"
        )
    print("\ntargets")
    for name, (value, target, passed) in results["targets"].items():
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {value:.3f} (target {target})")


def judge(results: dict[str, Any]) -> dict[str, tuple[float, str, bool]]:
    mlp, convnet = results["training"]["mlp"], results["training"]["convnet"]
    ratios, ours = mlp["ratios"], mlp["dlcli"]
    lowest = convnet["baseline"]["accuracy"] - TARGETS["convnet_accuracy_drop"]
    targets: dict[str, tuple[float, str]] = {
        "MLP wall dlcli/baseline": (ratios["wall"], f"<= {TARGETS['wall_ratio']}"),
        "MLP fit dlcli/baseline": (ratios["fit"], f"<= {TARGETS['fit_ratio']}"),
        "MLP test accuracy (lowest run)": (ours["accuracy_min"], f">= {TARGETS['accuracy']}"),
        "MLP peak RSS dlcli/baseline": (ratios["peak_rss"], f"<= {TARGETS['rss_ratio']}"),
        "MLP fit / compute floor (best probe of the run)": (
            ratios["fit_over_floor"],
            f"<= {TARGETS['floor_ratio']}",
        ),
        "MLP fit / compute floor (pair by pair, median)": (
            ratios["median_of_pair_ratios"]["fit_over_floor"],
            f"<= {TARGETS['floor_ratio']}",
        ),
        "convnet wall dlcli/baseline": (
            convnet["ratios"]["wall"],
            f"<= {TARGETS['convnet_wall_ratio']}",
        ),
        "convnet test accuracy (lowest dlcli run)": (
            convnet["dlcli"]["accuracy_min"],
            f">= {lowest:.4f}",
        ),
    }
    for name, row in results["startup"].items():
        targets[f"dlcli {name} (s)"] = (row["wall_s"], f"< {TARGETS['startup_seconds']}")
    row = results["inference"]["predict_1000"]
    targets["predict 1000: (predict() - load - decode) / model.predict"] = (
        row["in_process"]["ratio"],
        f"< {TARGETS['predict_ratio']}",
    )
    targets["predict 1000, whole process, dlcli/plain Keras"] = (
        row["ratio"],
        f"< {TARGETS['predict_ratio']}",
    )
    csv_table = results["csv_table"]["ratios"]
    targets["CSV 1M x 20 wall dlcli/(pandas + Keras)"] = (csv_table["wall"], "<= 0.8")
    targets["CSV 1M x 20 peak RSS dlcli/(pandas + Keras)"] = (csv_table["peak_rss"], "<= 1.0")
    for name, (value, target) in results["serving"]["targets"].items():
        targets[f"serve: {name}"] = (value, target)
    judged = {}
    for name, (value, target) in targets.items():
        operator, bound = target.split()
        passed = {
            "<=": value <= float(bound),
            "<": value < float(bound),
            ">=": value >= float(bound),
        }[operator]
        judged[name] = (value, target, passed)
    return judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one pair each, convnet 1 epoch")
    parser.add_argument("--pairs", type=int, default=3, help="baseline/dlcli pairs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per start-up/inference case")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.probe:
        probe()
        return
    pairs, repeats = (1, 1) if arguments.quick else (arguments.pairs, arguments.repeats)
    epochs = {
        "mlp": NETWORKS["mlp"].epochs,
        "convnet": 1 if arguments.quick else NETWORKS["convnet"].epochs,
    }
    output = arguments.output or BENCHMARKS / (
        "results-quick.json" if arguments.quick else "results.json"
    )
    started = time.perf_counter()
    load_before = os.getloadavg()
    mnist = mnist_cache()
    workdir = Path(tempfile.mkdtemp(prefix="dlcli-bench-"))
    training: dict[str, Any] = {}
    try:
        # The first dlcli run compiles with XLA from scratch; later ones load the programs.
        shutil.rmtree(xla_cache(), ignore_errors=True)
        print(
            f"matmul probe, then {pairs} pair(s) of training runs of each network ...", flush=True
        )
        probes = [measure_matmul()]
        for name in NETWORKS:
            runs = train_pairs(
                name, pairs, epochs[name], mnist, workdir, probes if name == "mlp" else None
            )
            training[name] = compare(runs, epochs[name])
        mlp_runs = training["mlp"]["dlcli"]["runs"]
        print("start-up, predict and evaluate ...", flush=True)
        startup = time_startup(workdir, 3 if arguments.quick else max(repeats, 5))
        inference = time_inference(
            mlp_runs[-1]["model"], mnist, workdir, repeats, reuse=arguments.quick
        )
        print("a CSV table of 1,000,000 rows x 20 columns: pandas + Keras, dlcli ...", flush=True)
        from csv_scale import run_pairs

        csv_table = run_pairs(rows=1_000_000, pairs=pairs)
        print("dlcli serve against a naive FastAPI + model.predict server ...", flush=True)
        serving = time_serving(mlp_runs[-1]["model"], workdir, quick=arguments.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mlp = training["mlp"]
    mlp["floor"] = floor = compute_floor(probes)
    mlp["ratios"]["fit_over_floor"] = mlp["dlcli"]["fit_s"] / floor["floor_s"]
    mlp["ratios"]["fit_over_floor_at_network_shapes"] = (
        mlp["dlcli"]["fit_s"] / floor["floor_at_network_shapes_s"]
    )
    mlp["ratios"]["median_of_pair_ratios"]["fit_over_floor"] = median(
        [run["fit"] / compute_floor(probes[i : i + 2])["floor_s"] for i, run in enumerate(mlp_runs)]
    )
    cold = [run for run in mlp_runs if run["xla_cache"] == "cold"]
    mlp["dlcli"]["first_run_cold_xla_cache"] = cold[0] if cold else None
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "quick": arguments.quick,
        "training": training,
        "startup": startup,
        "inference": inference,
        "csv_table": csv_table,
        "serving": serving,
    }
    results["targets"] = judge(results)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nresults: {output} ({results['bench_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
