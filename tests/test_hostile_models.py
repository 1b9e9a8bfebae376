"""Hostile model files for evaluate and predict: each refused with its own message, no code run.

One small real model is saved per module; every hostile variant is that file with its
config.json or members rewritten, so each refusal is owed to the one thing that was changed.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcli.errors import ModelFileError
from dlcli.model import artifact

from .helpers import invoke, model_info

DENSE = '"module": "keras.layers", "class_name": "Dense", "config": {'
ACTIVATION = '"activation": "linear"'


@dataclass(frozen=True)
class Models:
    folder: Path
    base: Path  # a dlcli model (with dlcli.json) that loads
    lambda_model: Path  # a Lambda layer whose code would create `marker`
    marker: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import keras

    folder = tmp_path_factory.mktemp("models")
    marker = folder / "pwned"
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    base = folder / "base.keras"
    artifact.save(model, model_info(), base)
    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    lambda_model = folder / "lambda.keras"
    artifact.save(
        keras.Sequential([keras.Input((2,)), keras.layers.Lambda(payload)]),
        model_info(),
        lambda_model,
    )
    marker.unlink()  # building the model ran the payload once
    return Models(folder, base, lambda_model, marker)


def rewritten(
    source: Path,
    target: Path,
    config: Callable[[str], str] | None = None,
    add: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    deflate: tuple[str, ...] = (),
) -> Path:
    """A copy of the zip `source` with config.json edited, members added, dropped or deflated."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for member in original.namelist():
            if member in drop:
                continue
            data = original.read(member)
            if member == "config.json" and config is not None:
                edited = config(data.decode())
                assert edited != data.decode(), "the edit changed nothing"
                data = edited.encode()
            method = zipfile.ZIP_DEFLATED if member in deflate else zipfile.ZIP_STORED
            copy.writestr(member, data, compress_type=method)
        for member, data in (add or {}).items():
            copy.writestr(member, data, compress_type=zipfile.ZIP_DEFLATED)
    return target


def patch_member(path: Path, member: str, patch: Callable[[bytearray, int, int], None]) -> None:
    """Edit `member` in place: patch(raw bytes, its local header offset, its central header's)."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(member).header_offset
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + struct.unpack_from("<H", raw, central + 28)[0]] != (
        member.encode()
    ):
        central = raw.index(b"PK\x01\x02", central + 4)
    patch(raw, local, central)
    path.write_bytes(bytes(raw))


def refusal(path: Path | str, **options: bool) -> str:
    with pytest.raises(ModelFileError) as caught:
        artifact.load(path, **options)
    return str(caught.value)


def test_the_unmodified_model_loads(models: Models) -> None:
    loaded = artifact.load(models.base)
    assert loaded.metadata == model_info()
    assert loaded.model.output_shape == (None, 1)


def test_lambda_model_is_refused_and_its_code_never_runs(models: Models) -> None:
    assert refusal(models.lambda_model) == (
        f"{models.lambda_model}: contains a Lambda layer, which would run code; refused"
    )
    assert not models.marker.exists()


def test_the_lambda_payload_is_live(models: Models) -> None:
    """Control: Keras with safe_mode off would have run it, so the test above means something."""
    import keras

    try:
        keras.saving.load_model(models.lambda_model, safe_mode=False)
        assert models.marker.exists()
    finally:
        models.marker.unlink(missing_ok=True)


def test_evaluate_refuses_it_with_exit_code_6(models: Models) -> None:
    result = invoke(["evaluate", str(models.lambda_model)])
    assert result.exit_code == 6, result.output
    assert result.stderr == (
        f"Error: {models.lambda_model}: contains a Lambda layer, which would run code; refused\n"
    )
    assert not models.marker.exists()


CONFIG_EDITS = {
    "layer from os": (
        lambda c: c.replace(DENSE, '"module": "os", "class_name": "system", "config": {', 1),
        "names the Python module `os` (system); only Keras's own objects are loaded",
    ),
    "function from subprocess": (
        lambda c: c.replace(
            ACTIVATION,
            '"activation": {"module": "subprocess", "class_name": '
            '"function", "config": "getoutput", "registered_name": null}',
        ),
        "names the Python module `subprocess` (function); only Keras's own objects are loaded",
    ),
    "module outside Keras itself": (
        lambda c: c.replace(
            '"module": "keras.layers", "class_name": "Dense"',
            '"module": "keras_hub.layers", "class_name": "Dense"',
        ),
        "names the Python module `keras_hub.layers` (Dense); only Keras's own objects are loaded",
    ),
    "Python's eval as a builtin function": (
        lambda c: c.replace(
            ACTIVATION,
            '"activation": {"module": "builtins", "class_name": '
            '"function", "config": "eval", "registered_name": "function"}',
        ),
        "names Python's built-in `eval`; only Keras's own objects are loaded",
    ),
    "registered name builtins>exec": (
        lambda c: c.replace(
            ACTIVATION,
            '"activation": {"module": "keras.activations", '
            '"class_name": "function", "config": "relu", '
            '"registered_name": "builtins>exec"}',
        ),
        "names Python's built-in `exec`; only Keras's own objects are loaded",
    ),
    "__lambda__ function": (
        lambda c: c.replace(
            ACTIVATION,
            '"activation": {"class_name": "__lambda__", "config": '
            '{"code": "", "defaults": null, "closure": null}}',
        ),
        "contains a Lambda layer, which would run code; refused",
    ),
    "enable_unsafe_deserialization": (
        lambda c: c.replace(DENSE, DENSE + '"x": "keras.config.enable_unsafe_deserialization", '),
        "asks for unsafe deserialization; refused",
    ),
    "config nested 100,000 deep": (
        lambda c: "[" * 100_000 + "]" * 100_000,
        "config.json inside is corrupt (nested too deeply)",
    ),
    "config that is not JSON": (
        lambda c: "{" + c,
        "config.json inside is corrupt (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))",
    ),
}


@pytest.mark.parametrize(("edit", "message"), CONFIG_EDITS.values(), ids=CONFIG_EDITS.keys())
def test_hostile_configs_are_refused(
    models: Models, tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    path = rewritten(models.base, tmp_path / "model.keras", config=edit)
    tracemalloc.start()
    try:
        assert refusal(path) == f"{path}: {message}"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
    assert not models.marker.exists()


SAFE_MODE_EDITS = {
    "TFSMLayer loading a SavedModel": (
        lambda c: c.replace('"class_name": "Dense"', '"class_name": "TFSMLayer"', 1),
        "Requested the deserialization of a `TFSMLayer`",
    ),
    "StringLookup reading /etc/passwd": (
        lambda c: c.replace(
            DENSE,
            '"module": "keras.layers", "class_name": "StringLookup", '
            '"config": {"vocabulary": "/etc/passwd", ',
            1,
        ),
        "could not be deserialized properly",
    ),
    "keras.utils.get_file downloading": (
        lambda c: c.replace(
            ACTIVATION,
            '"activation": {"module": "keras.utils", "class_name": '
            '"function", "config": "get_file", "registered_name": null}',
        ),
        "could not be deserialized properly",
    ),
}


@pytest.mark.parametrize(("edit", "reason"), SAFE_MODE_EDITS.values(), ids=SAFE_MODE_EDITS.keys())
def test_keras_objects_that_read_files_are_refused_by_safe_mode(
    models: Models, tmp_path: Path, edit: Callable[[str], str], reason: str
) -> None:
    """Keras's own classes pass dlcli's check; Keras's safe_mode (always on) refuses these."""
    path = rewritten(models.base, tmp_path / "model.keras", config=edit)
    message = refusal(path)
    assert message.startswith(f"{path}: cannot be loaded by Keras (") and reason in message
    assert "\n" not in message and len(message) < len(str(path)) + 340


def test_zip_bomb_is_refused_fast_in_bounded_memory(models: Models, tmp_path: Path) -> None:
    path = rewritten(models.base, tmp_path / "bomb.keras", add={"bomb.bin": bytes(32 * 1024**2)})
    with zipfile.ZipFile(path) as archive:
        total = sum(member.file_size for member in archive.infolist())
        packed = sum(member.compress_size for member in archive.infolist())
    tracemalloc.start()
    try:
        started = time.perf_counter()
        message = refusal(path)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message == f"{path}: unpacks to {total:,} bytes from {packed:,} (a zip bomb?); refused"
    assert seconds < 1.0 and peak < 8 * 1024 * 1024


def test_corrupt_compressed_member(models: Models, tmp_path: Path) -> None:
    path = rewritten(models.base, tmp_path / "model.keras", deflate=("config.json",))

    def reserved_block_type(raw: bytearray, local: int, central: int) -> None:
        name_length, extra_length = struct.unpack_from("<HH", raw, local + 26)
        raw[local + 30 + name_length + extra_length] = 0xFF  # deflate block type 3 is reserved

    patch_member(path, "config.json", reserved_block_type)
    assert refusal(path) == (
        f"{path}: not a Keras model file (cannot be unpacked: Error -3 while decompressing data: "
        "invalid block type)"
    )


def test_unknown_compression_method(models: Models, tmp_path: Path) -> None:
    path = rewritten(models.base, tmp_path / "model.keras", deflate=("config.json",))

    def method_97(raw: bytearray, local: int, central: int) -> None:
        struct.pack_into("<H", raw, local + 8, 97)
        struct.pack_into("<H", raw, central + 10, 97)

    patch_member(path, "config.json", method_97)
    assert refusal(path) == (
        f"{path}: not a Keras model file (cannot be unpacked: That compression method is not "
        "supported)"
    )


def test_encrypted_member(models: Models, tmp_path: Path) -> None:
    path = rewritten(models.base, tmp_path / "model.keras")

    def encrypted(raw: bytearray, local: int, central: int) -> None:
        raw[local + 6] |= 1
        raw[central + 8] |= 1

    patch_member(path, "config.json", encrypted)
    assert refusal(path) == (
        f"{path}: not a Keras model file (cannot be unpacked: File 'config.json' is encrypted, "
        "password required for extraction)"
    )


@pytest.mark.parametrize(
    ("dlcli_json", "reason"),
    [
        (b"[1, 2]", "not an object"),
        (b"null", "not an object"),
        (b"[" * 100_000, "nested too deeply"),
        (
            b'{"task": "\xff"}',
            "'utf-8' codec can't decode byte 0xff in position 10: invalid start byte",
        ),
    ],
    ids=["a list", "null", "nested 100,000 deep", "not UTF-8"],
)
def test_corrupt_dlcli_json(models: Models, tmp_path: Path, dlcli_json: bytes, reason: str) -> None:
    path = rewritten(
        models.base, tmp_path / "model.keras", drop=("dlcli.json",), add={"dlcli.json": dlcli_json}
    )
    assert refusal(path) == f"{path}: dlcli.json inside is corrupt ({reason})"


def test_files_that_are_not_keras_models(models: Models, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(models.base.read_bytes()[: models.base.stat().st_size // 2])
    empty = tmp_path / "empty.keras"
    empty.touch()
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    h5_named_keras = tmp_path / "h5.keras"
    h5_named_keras.write_bytes(h5.read_bytes())
    other = tmp_path / "model.zip"
    other.write_bytes(models.base.read_bytes())
    no_config = rewritten(models.base, tmp_path / "no_config.keras", drop=("config.json",))
    run_dir = tmp_path / "runs" / "tiny-1"
    run_dir.mkdir(parents=True)
    (run_dir / "model.keras").write_bytes(models.base.read_bytes())
    not_a_zip = "not a Keras model file (not a zip archive: truncated or corrupt?)"
    cases = {
        truncated: f"{truncated}: {not_a_zip}",
        empty: f"{empty}: the file is empty",
        h5: f"{h5}: legacy HDF5 models are not loaded; re-save it as .keras with Keras 3",
        h5_named_keras: f"{h5_named_keras}: {not_a_zip}",
        other: f"{other}: not a .keras model file",
        no_config: f"{no_config}: not a Keras model file (no config.json inside)",
        tmp_path / "missing.keras": f"model file not found: {tmp_path / 'missing.keras'}",
        tmp_path: f"{tmp_path}: is a folder, not a .keras model file",
        run_dir: (
            f"{run_dir}: is a folder, not a .keras model file; did you mean "
            f"{run_dir / 'model.keras'}?"
        ),
        "https://example.com/model.keras": (
            "https://example.com/model.keras: only local .keras files are loaded, not URLs"
        ),
        "file:///etc/model.keras": (
            "file:///etc/model.keras: only local .keras files are loaded, not URLs"
        ),
    }
    for path, message in cases.items():
        assert refusal(path) == message


def test_a_keras_model_without_dlcli_json(models: Models, tmp_path: Path) -> None:
    path = rewritten(models.base, tmp_path / "plain.keras", drop=("dlcli.json",))
    assert refusal(path) == (
        f"{path}: has no dlcli.json, so it was not trained by dlcli; `dlcli predict --model` "
        "can still use it"
    )
    assert artifact.load(path, require_metadata=False).metadata is None
