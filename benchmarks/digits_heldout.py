"""How many digits of tests/digit_set.py MNIST models read, with the MNIST framing before and
after stroke-width normalisation ("mnist" and "mnist-stroke").

Each model's images are framed as its dlcli.json says, but for the framing, which is set to each
of the two in turn; the digits are then classified in one batch. The table gives the accuracy
overall, by style (font, bold, marker, pen, slashed-zero, dotted-zero) and for the noisy and
the inverted images, with the number of images in each row. The held-out part is the one to
report; the tuning part is the one a change to the framing may be tuned on.

Usage: python benchmarks/digits_heldout.py MODEL.keras [MODEL.keras ...] [--part tuning]
(the models of configs/mnist.yaml and configs/mnist_cnn.yaml, trained with `dlcli train`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.digit_set

from dlcli.data.decode import to_array  # noqa: E402
from dlcli.inference.predict import describe  # noqa: E402
from dlcli.model import artifact  # noqa: E402
from tests.digit_set import STYLES, Sample, digit_set  # noqa: E402

FRAMINGS = ("mnist", "mnist-stroke")


def groups(samples: list[Sample]) -> dict[str, np.ndarray]:
    """Which samples fall in each row of the table, as boolean masks."""
    rows = {"all": np.ones(len(samples), dtype=bool)}
    for style in STYLES:
        rows[style] = np.array([sample.style == style for sample in samples])
    rows["noisy"] = np.array([sample.noisy for sample in samples])
    rows["inverted"] = np.array([sample.inverted for sample in samples])
    return rows


def read(model_path: Path, samples: list[Sample]) -> dict[str, np.ndarray]:
    """By framing: whether the model reads each sample's digit, its image framed that way."""
    loaded = artifact.load(model_path)
    assert loaded.metadata is not None
    description = describe(loaded.metadata)
    assert description.image is not None
    truth = np.array([sample.digit for sample in samples])
    found = {}
    for framing in FRAMINGS:
        info = dataclasses.replace(description.image, framing=framing)
        batch = np.stack([to_array(sample.image, info) for sample in samples])
        batch = batch.reshape((len(samples), *description.shape))
        labels = np.argmax(loaded.model.predict(batch, batch_size=256, verbose=0), axis=-1)
        found[framing] = labels == truth
    return found


def table(results: dict[str, dict[str, np.ndarray]], samples: list[Sample]) -> str:
    """Accuracy per row and per model and framing, with the row's size."""
    columns = [(model, framing) for model in results for framing in FRAMINGS]
    header = ["", "images"] + [f"{model} {framing}" for model, framing in columns]
    lines = [header]
    for row, mask in groups(samples).items():
        cells = [f"{results[model][framing][mask].mean():.1%}" for model, framing in columns]
        lines.append([row, str(int(mask.sum())), *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="model.keras files trained on MNIST")
    parser.add_argument("--part", choices=("held-out", "tuning"), default="held-out")
    arguments = parser.parse_args()
    samples = digit_set(arguments.part)
    results = {}
    for model_path in arguments.models:
        name = artifact.inspect(model_path).info.spec.name  # type: ignore[union-attr]
        results[name] = read(model_path, samples)
    print(f"tests/digit_set.py, {arguments.part} part: {len(samples)} images")
    print(table(results, samples))


if __name__ == "__main__":
    main()
