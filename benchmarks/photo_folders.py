"""Photo folders of any size: dlcli's streamed image folders against `image_dataset_from_directory`.

Generates synthetic photo folders (`generate`: JPEGs of 160x120, two classes, a light disc or
a dark square on noise of random colour) once, in a scratch folder outside the repository, the
smaller sets hard links into the largest; then trains one epoch of the same small convnet on
each size with dlcli (`cache: none`, the images decoded each epoch as Keras's tool does) and
with benchmarks/baseline_photos.py, alternately (the order swapped from size to size), and
reports each process's wall time, `fit` time and peak RSS, and the ratios dlcli/baseline.

Usage: python benchmarks/photo_folders.py [--sizes 4000 16000 64000] [--folder PATH] [--output PATH]
Writes benchmarks/results-photos.json (or --output) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import DLCLI, PYTHON, checked, measure

BENCHMARKS = Path(__file__).resolve().parent
CLASSES = ("disc", "square")
TEST_IMAGES = 512
SPEC = """name: photos
seed: 1
dataset:
  images: {{train: {train}, test: {test}, image_size: [128, 128], cache: none}}
model:
  input: [128, 128, 3]
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Conv2D: {{filters: 16, kernel_size: 3, activation: relu}}
    - MaxPooling2D: {{pool_size: 2}}
    - Conv2D: {{filters: 32, kernel_size: 3, activation: relu}}
    - MaxPooling2D: {{pool_size: 2}}
    - Conv2D: {{filters: 64, kernel_size: 3, activation: relu}}
    - GlobalAveragePooling2D
    - Dense: {{units: 2, activation: softmax}}
compile: {{optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}}
fit: {{epochs: 1, batch_size: 32}}
output: {{onnx: false}}
"""


def _photos(job: tuple[str, int, int]) -> None:
    """Write `count` JPEGs of one class into `folder`, drawn from `seed`."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder, count, seed = job
    rng = np.random.default_rng(seed)
    label = CLASSES.index(Path(folder).name)
    for index in range(count):
        base = rng.integers(0, 256, 3)
        pixels = np.clip(base + rng.normal(0, 40, (120, 160, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        x, y, r = int(rng.integers(30, 130)), int(rng.integers(30, 90)), int(rng.integers(12, 28))
        if label == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(235, 235, 235))
        else:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=(20, 20, 20))
        image.save(Path(folder) / f"{index:06}.jpg", quality=90)


def generate(root: Path, sizes: list[int]) -> None:
    """`root/n<size>/train/<class>/` for each size (the smaller ones hard links into the
    largest) and `root/test/<class>/`; kept when already there."""
    largest = max(sizes)
    full = root / f"n{largest}" / "train"
    jobs = []
    for folder, count, seed in (
        *((full / name, largest // 2, i) for i, name in enumerate(CLASSES)),
        *((root / "test" / name, TEST_IMAGES // 2, 10 + i) for i, name in enumerate(CLASSES)),
    ):
        if not folder.is_dir() or len(os.listdir(folder)) != count:
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [(str(folder), count, seed)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:  # each class in one process
        list(pool.map(_photos, jobs))
    for size in sizes:
        for name in CLASSES:
            folder = root / f"n{size}" / "train" / name
            if size == largest or (folder.is_dir() and len(os.listdir(folder)) == size // 2):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(size // 2):
                os.link(full / name / f"{index:06}.jpg", folder / f"{index:06}.jpg")


def run_dlcli(root: Path, size: int, workdir: Path) -> dict[str, Any]:
    spec = workdir / f"photos-{size}.yaml"
    spec.write_text(SPEC.format(train=root / f"n{size}" / "train", test=root / "test"))
    run = checked(measure([*DLCLI, "train", str(spec)], cwd=workdir), f"dlcli on {size}")
    fit = re.search(r"Fit (\d+(?:\.\d+)?)s", run.stdout + run.stderr)
    accuracy = re.search(r"accuracy (\d\.\d+)", run.stdout)
    return {
        "wall_s": round(run.wall, 2),
        "fit_s": float(fit.group(1)) if fit else None,
        "peak_rss_mb": round(run.rss_mb),
        "test_accuracy": float(accuracy.group(1)) if accuracy else None,
        "others_cpu_s": round(run.others_cpu, 1),
    }


def run_baseline(root: Path, size: int) -> dict[str, Any]:
    command = [PYTHON, str(BENCHMARKS / "baseline_photos.py")]
    command += [str(root / f"n{size}" / "train"), str(root / "test")]
    run = checked(measure(command), f"baseline on {size}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return {
        "wall_s": round(run.wall, 2),
        "fit_s": round(result["fit_seconds"], 2),
        "peak_rss_mb": round(run.rss_mb),
        "test_accuracy": round(result["test_accuracy"], 4),
        "others_cpu_s": round(run.others_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "dlcli-photos")
    parser.add_argument("--output", type=Path, default=BENCHMARKS / "results-photos.json")
    arguments = parser.parse_args()
    started = time.perf_counter()
    print(f"photo folders in {arguments.folder} ...", flush=True)
    generate(arguments.folder, arguments.sizes)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dlcli-photos-") as workdir:
        for turn, size in enumerate(arguments.sizes):
            print(f"{size} images: dlcli and image_dataset_from_directory ...", flush=True)
            order = ("dlcli", "baseline") if turn % 2 == 0 else ("baseline", "dlcli")
            row: dict[str, Any] = {"images": size, "order": list(order)}
            for tool in order:
                row[tool] = (
                    run_dlcli(arguments.folder, size, Path(workdir))
                    if tool == "dlcli"
                    else run_baseline(arguments.folder, size)
                )
            row["wall_ratio"] = round(row["dlcli"]["wall_s"] / row["baseline"]["wall_s"], 3)
            rows.append(row)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| images | tool | wall s | fit s | peak RSS MB | test accuracy | wall ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for row in rows:
        for tool in ("dlcli", "baseline"):
            item = row[tool]
            ratio = f"{row['wall_ratio']:.2f}x" if tool == "dlcli" else ""
            print(
                f"| {row['images']:,} | {tool} | {item['wall_s']:.1f} | {item['fit_s']} | "
                f"{item['peak_rss_mb']} | {item['test_accuracy']} | {ratio} |"
            )
    print(f"\nload average before {load_before}, after {results['load_average']['after']}")


if __name__ == "__main__":
    main()
