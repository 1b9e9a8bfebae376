"""Photo folders streamed in training (`dataset.images.cache: none`): decoded a batch at a time by
predict's decoder, to the very weights of the images held in memory; bad files named in one
line (or left out and counted with --skip-bad); and a streamed run killed with SIGKILL during
an epoch, then resumed, ending with the weights of the uninterrupted run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from .helpers import home_env, invoke

CLASSES = ("cat", "dog")


def spec(cache: str, **dataset: Any) -> str:
    """A small convnet on 16x16 RGB photos, 3 epochs with Dropout, no ONNX file."""
    return yaml.safe_dump(
        {
            "name": "photos",
            "seed": 3,
            "dataset": {
                "images": {"train": "photos", "image_size": [16, 16], "cache": cache},
                "validation_split": 0.25,
                "test_split": 0.2,
                **dataset,
            },
            "model": {
                "input": [16, 16, 3],
                "layers": [
                    {"Rescaling": {"scale": 1 / 255}},
                    {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu"}},
                    "Flatten",
                    {"Dropout": {"rate": 0.25}},
                    {"Dense": {"units": 2, "activation": "softmax"}},
                ],
            },
            "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"},
            "fit": {"epochs": 3, "batch_size": 8},
            "output": {"onnx": False},
        }
    )


def write_photos(folder: Path, count: int = 30) -> Path:
    """`count` photos per class, PNG and JPEG of varied sizes (resized to 16x16 when read)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True)
        for index in range(count):
            size = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
            pixels = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.uint8)
            pixels[..., label] = 220
            suffix = "jpg" if index % 2 else "png"
            Image.fromarray(pixels).save(folder / name / f"{index:03}.{suffix}")
    return folder


def weights(model: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(model).get_weights()


def dataset_record(model: Path) -> dict[str, Any]:
    import json

    with zipfile.ZipFile(model) as archive:
        return json.loads(archive.read("dlcli.json"))["dataset"]


def test_streamed_training_ends_with_the_weights_of_the_images_held_in_memory(
    isolated: Path,
) -> None:
    """The same run with the images decoded a batch at a time and held in memory: bitwise the
    same weights (same decoder, same order), the same digest and split sizes."""
    from dlcli.data.image_stream import ImageFiles
    from dlcli.data.load import load_dataset
    from dlcli.spec.schema import DatasetSpec

    write_photos(isolated / "photos")
    for cache in ("none", "memory"):
        (isolated / f"{cache}.yaml").write_text(spec(cache))
        result = invoke(["train", f"{cache}.yaml", "--quiet"])
        assert result.exit_code == 0, result.output
    streamed, held = (isolated / "runs" / f"photos-{n}" / "model.keras" for n in (1, 2))
    for a, b in zip(weights(streamed), weights(held), strict=True):
        np.testing.assert_array_equal(a, b)
    assert dataset_record(streamed) == dataset_record(held)
    assert dataset_record(streamed)["sizes"] == {"train": 36, "validation": 12, "test": 12}
    dataset = DatasetSpec.model_validate(yaml.safe_load(spec("none"))["dataset"])
    splits = load_dataset(dataset, isolated, 3, stream=True)
    assert isinstance(splits.train.x, ImageFiles) and isinstance(splits.test.x, ImageFiles)
    decoded = splits.test.x.decode(np.arange(len(splits.test)))
    in_memory = load_dataset(dataset, isolated, 3)  # as evaluate reads it: arrays
    np.testing.assert_array_equal(decoded, in_memory.test.x)


def test_unset_cache_holds_small_folders_in_memory() -> None:
    """Unset, the cache is memory up to a tenth of the physical memory, then none."""
    from dlcli.data.common import ImageInfo
    from dlcli.data.image_folders import MEMORY_FRACTION, physical_memory, resolved_cache

    info = ImageInfo(128, 128, 3)
    fits = int(MEMORY_FRACTION * physical_memory()) // (128 * 128 * 3)
    assert resolved_cache(None, fits, info) == "memory"
    assert resolved_cache(None, fits + 1, info) == "none"
    assert resolved_cache("none", 10, info) == "none"


def bad_photos(folder: Path) -> tuple[Path, Path]:
    """Photos with a truncated JPEG and a text file among them: (the JPEG, the text file)."""
    from PIL import Image

    write_photos(folder, count=12)
    truncated = folder / "cat" / "broken.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    Image.fromarray(noise).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:-2000])  # the header kept, pixels cut short
    notes = folder / "dog" / "notes.txt"
    notes.write_text("not a photo\n")
    return truncated.relative_to(folder.parent), notes.relative_to(folder.parent)


def test_bad_files_in_a_streamed_folder_are_one_line_each_or_skipped_and_counted(
    isolated: Path,
) -> None:
    """A text file is found by its header before training; a truncated JPEG, whose header is
    fine, when its batch is decoded: each is one line, exit 4. --skip-bad decodes every file
    first and leaves both out, counted."""
    truncated, notes = bad_photos(isolated / "photos")  # relative paths, as the spec has them
    (isolated / "spec.yaml").write_text(spec("none"))
    result = invoke(["train", "spec.yaml", "--quiet"])
    assert result.exit_code == 4, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: 1 of 26 image files cannot be read; the first: {notes}: not an image "
        "(cannot identify image file)"
    )
    (isolated / notes).unlink()
    result = invoke(["train", "spec.yaml", "--quiet"])
    assert result.exit_code == 4, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {truncated}: truncated or corrupt image data; found while training "
        "(`--skip-bad` decodes every image before training and leaves such files out)"
    )
    assert not (isolated / "runs" / "photos-1").exists()  # no backup: nothing left behind
    (isolated / notes).write_text("not a photo\n")
    result = invoke(["train", "spec.yaml", "--skip-bad"])
    assert result.exit_code == 0, result.output
    model = isolated / "runs" / "photos-1" / "model.keras"
    assert dataset_record(model)["skipped"] == 2
    assert "Skipped 2 image files that cannot be read" in result.output


def test_a_folder_of_empty_files_is_one_line(isolated: Path) -> None:
    """0-byte files are named as such, before training, in one line (exit 4)."""
    for name in CLASSES:
        (isolated / "photos" / name).mkdir(parents=True)
        for index in range(3):
            (isolated / "photos" / name / f"{index}.jpg").write_bytes(b"")
    (isolated / "spec.yaml").write_text(spec("none"))
    result = invoke(["train", "spec.yaml", "--quiet"])
    assert result.exit_code == 4, result.output
    first = Path("photos", "cat", "0.jpg")
    assert result.output.strip().splitlines() == [
        f"Error: 6 of 6 image files cannot be read; the first: {first}: an empty file "
        "(0 bytes), not an image"
    ]


def dlcli(folder: Path, *arguments: str, strace: list[str] | None = None) -> Any:
    command = [*(strace or []), sys.executable, "-m", "dlcli", *arguments]
    env = home_env(folder / "home", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_streamed_run_killed_during_an_epoch_resumes_to_the_same_weights(
    isolated: Path,
) -> None:
    """SIGKILL (strace's fault injection) as the run opens the weights file of its second backup:
    epoch 2 has been trained from the stream, epoch 1's backup is whole. The photos themselves
    are opened on the decoding pool's threads, and strace counts a syscall per thread, so a
    kill at their Nth opening would land at a different epoch from run to run. --resume then
    decodes epochs 2 and 3 again and ends with bitwise the weights and history of the same run
    uninterrupted."""
    write_photos(isolated / "photos")
    (isolated / "spec.yaml").write_text(spec("none", test_split=0.0))
    whole = invoke(["train", "spec.yaml", "--quiet"])
    assert whole.exit_code == 0, whole.output
    # each backup opens its weights file 3 times on the main thread: the 4th is epoch 2's
    weights_file = isolated / "runs" / "photos-2" / "backup" / ".partial" / "weights.weights.h5"
    strace = ["strace", "-f", "-qq", f"-P{weights_file}"]
    strace += ["-e", "trace=openat", "-e", "inject=openat:signal=KILL:when=4", "--"]
    killed = dlcli(isolated, "train", "spec.yaml", "--quiet", strace=strace)
    assert killed.returncode in (-9, 137), killed.stderr[-2000:]
    run = isolated / "runs" / "photos-2"
    assert not (run / "model.keras").exists()
    assert list(run.glob("backup/epoch-*")), "killed before the first backup"
    resumed = dlcli(isolated, "train", "--resume", "runs/photos-2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch" in resumed.stderr
    first = isolated / "runs" / "photos-1"
    assert (run / "history.csv").read_text() == (first / "history.csv").read_text()
    for a, b in zip(weights(run / "model.keras"), weights(first / "model.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
