"""The figures of `dlcli export` and of predict without TensorFlow, on trained MNIST models.

For each model given: every format and quantization exported through the CLI (size, seconds,
max abs difference, top-1 agreement and accuracy on 512 test examples); then `dlcli predict`
on one image and on 1,000 images, through the verified model.onnx and through Keras
(`--runtime keras`), alternating, whole process: median wall seconds and peak RSS of 5 runs
(2 for 1,000 images through Keras).

Usage: python benchmarks/export_formats.py runs/mnist-1/model.keras [runs/mnist_cnn-1/...]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DLCLI = [sys.executable, "-m", "dlcli"]
EXPORTS = [
    ("onnx", None),
    ("onnx", "int8"),
    ("litert", None),
    ("litert", "float16"),
    ("litert", "int8"),
    ("savedmodel", None),
    ("openvino", None),
]
NAMES = {"onnx": "m.onnx", "litert": "m.tflite", "savedmodel": "m", "openvino": "m.xml"}


def timed(arguments: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one whole `dlcli` process, by /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r") as report:
        command = ["/usr/bin/time", "-f", "%e %M", "-o", report.name, *DLCLI, *arguments]
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
        seconds, kilobytes = report.read().split()[-2:]
    return float(seconds), int(kilobytes) / 1024


def exports(model: Path, folder: Path) -> None:
    print(f"\n{model}: export, compared with Keras on 512 test examples")
    print(f"{'format':<22}{'KiB':>8}{'s':>7}{'max diff':>11}{'agree':>8}{'acc':>8}{'keras':>8}")
    for fmt, quantize in EXPORTS:
        target = folder / f"{fmt}-{quantize}" / NAMES[fmt]
        target.parent.mkdir(parents=True)
        arguments = ["export", str(model), "--format", fmt, "--output", str(target), "--json"]
        done = subprocess.run(
            [*DLCLI, *arguments, *(["--quantize", quantize] if quantize else [])],
            capture_output=True,
            text=True,
            check=False,
        )
        name = f"{fmt} {quantize or ''}"
        if done.returncode != 0:
            print(f"{name:<22}{done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout)
        print(
            f"{name:<22}{r['bytes'] / 1024:>8.0f}{r['seconds']:>7.1f}{r['max_abs_diff']:>11.2g}"
            f"{r['top1_agreement']:>8.4f}{r['exported_accuracy']:>8.4f}"
            f"{r['keras_accuracy']:>8.4f}"
        )


def predictions(model: Path, folder: Path) -> None:
    digits = sorted((REPO / "examples" / "digits").glob("*.png"))
    many = folder / "many"
    many.mkdir()
    for index in range(1000):
        shutil.copy(digits[index % len(digits)], many / f"{index:04d}.png")
    for label, inputs, repeats in (
        ("1 image", [str(digits[7])], 5),
        ("1,000 images", [str(many)], 2),
    ):
        times: dict[str, list[tuple[float, float]]] = {"onnx": [], "keras": []}
        for _ in range(repeats):
            for runtime in times:
                arguments = [
                    "predict",
                    *inputs,
                    "--model",
                    str(model),
                    "--runtime",
                    runtime,
                    "--csv",
                ]
                times[runtime].append(timed(arguments, folder))
        medians = {
            r: [statistics.median(v[i] for v in t) for i in (0, 1)] for r, t in times.items()
        }
        ratio = medians["keras"][0] / medians["onnx"][0]
        print(
            f"predict {label}: onnx {medians['onnx'][0]:.2f} s {medians['onnx'][1]:.0f} MB, "
            f"keras {medians['keras'][0]:.2f} s {medians['keras'][1]:.0f} MB "
            f"(median of {repeats}; {ratio:.1f}x)"
        )


def main() -> None:
    for argument in sys.argv[1:]:
        model = Path(argument).resolve()
        with tempfile.TemporaryDirectory() as temporary:
            exports(model, Path(temporary))
            predictions(model, Path(temporary))


if __name__ == "__main__":
    main()
