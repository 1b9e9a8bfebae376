"""model.keras with an embedded dlcli.json: written atomically, loaded only when safe.

The file stays a normal Keras zip (`keras.saving.load_model` reads it); dlcli adds the member
`dlcli.json` with everything evaluate and predict need: the resolved spec, the dataset
reference, the task, class names, how inputs must look, final metrics, time and device.
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
import zipfile
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlcli.errors import ModelFileError, OutputError

METADATA_MEMBER = "dlcli.json"
FORMAT_VERSION = 1
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_COMPRESSION_RATIO = 200
_UNSAFE_MARKERS = ("enable_unsafe_deserialization",)


@dataclass(frozen=True)
class Artifact:
    model: Any
    metadata: dict[str, Any] | None
    path: Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then move it into place."""
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            with suppress(OSError):
                temporary.unlink()
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def save(model: Any, metadata: dict[str, Any], path: Path) -> None:
    """Save `model` with `metadata` as dlcli.json; an earlier file is replaced only on success."""
    metadata = {"format": FORMAT_VERSION, **metadata}
    temporary = None
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
        os.close(handle)
        temporary = Path(name)
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=2, default=str))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if temporary is not None:
            with suppress(OSError):
                temporary.unlink()


def _walk(config: Any) -> Any:
    """Every mapping in a JSON document, without recursion (a hostile file nests deeply)."""
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            yield node
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _parse_member(path: Path, member: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ModelFileError(f"{path}: {member} inside is corrupt ({error})") from error
    except RecursionError as error:
        raise ModelFileError(f"{path}: {member} inside is corrupt (nested too deeply)") from error


def _check_archive(path: Path) -> dict[str, Any] | None:
    """Refuse what is not a plain, bounded Keras zip; return dlcli.json when present."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            packed = max(1, sum(member.compress_size for member in members))
            if total > MAX_UNCOMPRESSED_BYTES or total / packed > MAX_COMPRESSION_RATIO:
                raise ModelFileError(
                    f"{path}: unpacks to {total:,} bytes from {packed:,} (a zip bomb?); refused"
                )
            names = {member.filename for member in members}
            if "config.json" not in names:
                raise ModelFileError(f"{path}: not a Keras model file (no config.json inside)")
            config_text = archive.read("config.json").decode("utf-8", "replace")
            metadata_data = archive.read(METADATA_MEMBER) if METADATA_MEMBER in names else None
    except zipfile.BadZipFile as error:
        raise ModelFileError(
            f"{path}: not a Keras model file (not a zip archive: truncated or corrupt?)"
        ) from error
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        # a damaged deflate stream, an unknown compression method, an encrypted member
        raise ModelFileError(
            f"{path}: not a Keras model file (cannot be unpacked: {error})"
        ) from error
    metadata = None
    if metadata_data is not None:
        metadata = _parse_member(path, METADATA_MEMBER, metadata_data)
        if not isinstance(metadata, dict):
            raise ModelFileError(f"{path}: {METADATA_MEMBER} inside is corrupt (not an object)")
    config = _parse_member(path, "config.json", config_text.encode())
    if any(marker in config_text for marker in _UNSAFE_MARKERS):
        raise ModelFileError(f"{path}: asks for unsafe deserialization; refused")
    for node in _walk(config):
        class_name, module = node.get("class_name"), node.get("module")
        if class_name == "Lambda" or class_name == "__lambda__":
            raise ModelFileError(f"{path}: contains a Lambda layer, which would run code; refused")
        if isinstance(module, str) and module.split(".")[0] not in ("keras", "builtins"):
            raise ModelFileError(
                f"{path}: names the Python module `{module}` ({class_name}); "
                "only Keras's own objects are loaded"
            )
        # "builtins" stands for Keras's own functions (relu, mse); never for Python's eval
        registered = str(node.get("registered_name") or "")
        names = [node.get("config")] if module == "builtins" else []
        if registered.startswith("builtins>"):
            names.append(registered.removeprefix("builtins>"))
        for name in names:
            if isinstance(name, str) and hasattr(builtins, name):
                raise ModelFileError(
                    f"{path}: names Python's built-in `{name}`; only Keras's own objects are loaded"
                )
    return metadata


def load(path: Path | str, *, require_metadata: bool = True) -> Artifact:
    """Load a local .keras file with safe_mode=True after checking it is safe to."""
    text = str(path)
    if "://" in text:
        raise ModelFileError(f"{text}: only local .keras files are loaded, not URLs")
    path = Path(text)
    if path.is_dir():
        hint = f"; did you mean {path / 'model.keras'}?" if (path / "model.keras").is_file() else ""
        raise ModelFileError(f"{path}: is a folder, not a .keras model file{hint}")
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ModelFileError(
            f"{path}: legacy HDF5 models are not loaded; re-save it as .keras with Keras 3"
        )
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"{path}: not a .keras model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    metadata = _check_archive(path)
    if metadata is None and require_metadata:
        raise ModelFileError(
            f"{path}: has no {METADATA_MEMBER}, so it was not trained by dlcli; "
            "`dlcli predict --model` can still use it"
        )
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=True)
    except Exception as error:  # Keras raises many types for a damaged file
        reason = " ".join(str(error).split())[:300]
        raise ModelFileError(f"{path}: cannot be loaded by Keras ({reason})") from error
    return Artifact(model, metadata, path)
