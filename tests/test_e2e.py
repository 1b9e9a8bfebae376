"""The product as a new user meets it: the installed `dlcli` in a subprocess, with an empty HOME
and dlcli cache, the real dataset loaders, Keras and TensorFlow unfaked.

The dataset origins are unreachable (a proxy on 127.0.0.1 that refuses, see `user_env`); the
package index is not, so MNIST comes from its package-index mirror exactly as on a machine
without a route to the Keras origin. The whole tier shares one cache and one trained model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO, accuracy_of, run_cli

KERAS_DATASETS = {
    "fashion_mnist": ["train-labels-idx1-ubyte.gz", "fashion-mnist/"],
    "imdb": ["imdb.npz", "imdb.npz"],
    "reuters": ["reuters.npz", "reuters.npz"],
    "boston_housing": ["boston_housing.npz", "boston_housing.npz"],
}
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The `Error: ...` line, after checking it is the last line and there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error: ") for line in lines) == 1, result.stderr
    return lines[-1]


def test_mnist_trains_from_the_package_index_mirror_on_an_empty_cache(first_model: Path) -> None:
    run = first_model.parent
    assert {"model.keras", "metrics.json", "history.csv", "curves.png", "spec.yaml"} <= {
        path.name for path in run.iterdir()
    }
    assert not (run / "backup").exists(), "the backup is removed once the model is saved"


def test_the_readme_predict_runs_the_verified_onnx_model_without_tensorflow(
    first_model: Path, workspace: Path, user_env: dict[str, str]
) -> None:
    """The README's third command, as written: no --model, a 200x200 colour photo of a 7 (every
    format unquantized is exported in test_export.py; `make bench` measures them on MNIST)."""
    seven = str(REPO / "examples" / "digits" / "7.png")
    command = [sys.executable, "-X", "importtime", "-m", "dlcli", "predict", seven]
    result = subprocess.run(
        command, capture_output=True, text=True, env=user_env, cwd=workspace, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"7\.png\W+7 \d+\.\d%", result.stdout), result.stdout
    assert "Runtime: onnxruntime, runs/" in result.stderr
    assert not re.findall(r"\| (tensorflow|keras)$", result.stderr, re.MULTILINE)


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "m.onnx"), ("litert", "m.tflite")])
def test_the_first_model_quantized_keeps_its_accuracy(
    fmt: str, name: str, first_model: Path, workspace: Path, user_env: dict[str, str]
) -> None:
    """`--quantize int8` on the MNIST network: 512 examples checked, at least 97% top-1
    agreement with Keras and at most 2 points of accuracy lost. The unquantized exports, held
    to the float tolerance, are checked in test_export.py
    (test_each_format_is_verified_in_its_runtime)."""
    output = workspace / "exports" / f"{fmt}-int8"
    output.mkdir(parents=True)
    arguments = ["export", str(first_model), "--format", fmt, "--output", str(output / name)]
    result = run_cli([*arguments, "--json", "--quantize", "int8"], user_env, workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fully_quantize" not in result.stderr, "the converter's native log is not shown"
    record = json.loads(result.stdout)
    assert record["examples"] == 512 and record["top1_agreement"] >= 0.97
    assert record["exported_accuracy"] >= record["keras_accuracy"] - 0.02


def test_evaluate_and_predict_the_first_model(
    first_model: Path, workspace: Path, user_env: dict[str, str]
) -> None:
    result = run_cli(["evaluate", "runs/mnist-1/model.keras"], user_env, workspace)
    assert result.returncode == 0, result.stderr
    assert re.search(r"accuracy\s+0\.9[4-9]", result.stdout), result.stdout

    digits = str(REPO / "examples" / "digits" / "*.png")
    result = run_cli(["predict", digits, "--model", str(first_model)], user_env, workspace)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"digits/(\d)\.png\W+(\d) \d+\.\d%", result.stdout)
    assert len(rows) == 10, result.stdout
    right = sum(true == predicted for true, predicted in rows)
    assert right >= 9, result.stdout


@pytest.mark.parametrize("name", sorted(KERAS_DATASETS))
def test_keras_dataset_configs_name_the_url_and_where_to_place_the_file(
    name: str, workspace: Path, user_env: dict[str, str]
) -> None:
    """A config of a keras.datasets dataset whose origin is unreachable ends in one line naming
    the URL and where to place the file by hand, with exit code 5 and no run folder."""
    result = run_cli(
        ["train", str(REPO / "configs" / f"{name}.yaml"), "--set", "fit.epochs=1"],
        user_env,
        workspace,
    )
    assert result.returncode == 5, result.stderr
    line = one_error_line(result)
    first_file, target = KERAS_DATASETS[name]
    datasets = Path(user_env["HOME"]) / ".keras" / "datasets"
    assert line.startswith(
        f"Error: dataset `{name}` could not be downloaded (URL fetch failure on "
        f"{ORIGIN}{first_file}: "
    ), line
    assert "Connection refused" in line
    assert (
        f"by hand {'into' if target.endswith('/') else 'and save it as'} {datasets / target}"
        in (line)
    )
    assert not list((workspace / "runs").glob(f"{name}-*")), "no run folder for a failed start"


@pytest.mark.parametrize(
    ("config", "dataset", "url"),
    [
        ("mnist.yaml", "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("mnist.yaml", "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
        ("boston_housing.yaml", "california_housing", f"{ORIGIN}california_housing.npz"),
    ],
)
def test_other_keras_datasets_name_the_url(
    config: str, dataset: str, url: str, workspace: Path, user_env: dict[str, str]
) -> None:
    arguments = ["train", str(REPO / "configs" / config), "--set", f"dataset.name={dataset}"]
    result = run_cli(arguments, user_env, workspace)
    assert result.returncode == 5, result.stderr
    assert f"URL fetch failure on {url}: " in one_error_line(result)


# The convnet learns enough from a quarter of the training images (test accuracy ~0.94, the
# 10 digits right) and fits in under a third of the time of the whole training set:
# validation_split holds out the rest and validation_freq=2 leaves them unscored in a
# one-epoch run (mnist_two_branch validates on its split).
QUARTER = ["--set", "dataset.validation_split=0.75", "--set", "fit.validation_freq=2"]


@pytest.mark.parametrize(
    ("config", "smaller"),
    [("mnist_cnn.yaml", QUARTER), ("mnist_two_branch.yaml", [])],
    ids=["mnist_cnn.yaml", "mnist_two_branch.yaml"],
)
def test_mnist_configs_train_one_epoch(
    config: str,
    smaller: list[str],
    first_model: Path,
    workspace: Path,
    user_env: dict[str, str],
) -> None:
    arguments = ["train", str(REPO / "configs" / config), "--set", "fit.epochs=1", *smaller]
    result = run_cli(arguments, user_env, workspace, timeout=900)
    assert result.returncode == 0, result.stderr
    assert accuracy_of(result.stdout) >= 0.9
    model = re.search(r"^Model: (.+)$", result.stdout, re.MULTILINE)[1]
    digits = str(REPO / "examples" / "digits" / "*.png")
    result = run_cli(["predict", digits, "--model", model], user_env, workspace)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"digits/(\d)\.png\W+(\d) \d+\.\d%", result.stdout)
    assert len(rows) == 10 and sum(true == guess for true, guess in rows) >= 8, result.stdout


@pytest.mark.slow  # tests/test_train.py learns XOR through the CLI in-process, in make test
def test_xor_learns_the_four_points(workspace: Path, user_env: dict[str, str]) -> None:
    result = run_cli(["train", str(REPO / "configs" / "xor.yaml")], user_env, workspace)
    assert result.returncode == 0, result.stderr
    assert "On the training data (no test split): accuracy 1.0000" in result.stdout


@pytest.mark.slow  # real MNIST; make test searches this config's space on tiny images
def test_the_shipped_search_runs_on_mnist(
    first_model: Path, workspace: Path, user_env: dict[str, str]
) -> None:
    """configs/mnist_tune.yaml for real, shortened: 2 trials of 1 epoch (tests/test_tune.py
    runs the same search on 160 random images, and tests the search itself on a tiny CSV)."""
    arguments = [
        "tune",
        str(REPO / "configs" / "mnist_tune.yaml"),
        "--trials",
        "2",
        "--set",
        "fit.epochs=1",
    ]
    result = run_cli(arguments, user_env, workspace, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    assert re.search(r"^Study mnist-tune in runs/mnist-tune-\d+$", result.stderr, re.MULTILINE)
    rows = re.findall(r"^ +(\d) +complete +(0\.9\d+) ", result.stdout, re.MULTILINE)
    assert [number for number, _ in rows] == ["0", "1"], result.stdout
    test = re.search(r"On the test split, the best trial alone: accuracy (0\.\d+)", result.stdout)
    assert test and float(test[1]) >= 0.9, result.stdout
    assert re.search(
        r"^Train the best spec: dlcli train runs/mnist-tune-\d+/best.yaml$",
        result.stdout,
        re.MULTILINE,
    )


def test_tensorboard_logs_are_written(workspace: Path, user_env: dict[str, str]) -> None:
    """`--tensorboard` writes TensorBoard logs in the run folder (tensorboard is a dependency of
    dlcli, not of TensorFlow)."""
    arguments = ["train", str(REPO / "configs" / "xor.yaml"), "--set", "fit.epochs=2"]
    result = run_cli([*arguments, "--set", "name=xor_tb", "--tensorboard"], user_env, workspace)
    assert result.returncode == 0, result.stderr
    logs = workspace / "runs" / "xor_tb-1" / "tensorboard"
    assert list((logs / "train").glob("events.out.tfevents.*")), sorted(logs.rglob("*"))
