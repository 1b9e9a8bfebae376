"""A .keras file checked safe to load, without TensorFlow: a bounded zip of Keras's own objects.

`check` refuses what `keras.saving.load_model` should never be given: a zip bomb, a file that is
not a Keras zip, a config asking for unsafe deserialization, a Lambda layer, a Python module
other than Keras's, or Python's built-ins named as functions. It returns the bytes of the
member dlcli adds (dlcli.json), which `dlcli.model.artifact` parses.
"""

from __future__ import annotations

import builtins
import json
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlcli.errors import ModelFileError

METADATA_MEMBER = "dlcli.json"
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_COMPRESSION_RATIO = 200
_UNSAFE_MARKERS = ("enable_unsafe_deserialization",)


def parse_member(path: Path, member: str, data: bytes) -> Any:
    """A JSON member of the zip at `path`; ModelFileError names the file and member if corrupt."""
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ModelFileError(f"{path}: {member} inside is corrupt ({error})") from error
    except RecursionError as error:
        raise ModelFileError(f"{path}: {member} inside is corrupt (nested too deeply)") from error


def _walk(config: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a JSON document, without recursion (a hostile file nests deeply)."""
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            yield node
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def check(path: Path) -> bytes | None:
    """Refuse what is not a plain, bounded Keras zip; return dlcli.json's bytes when present.

    Raises:
        ModelFileError: one line naming the file: a zip bomb, not a zip or not a Keras zip, a
            member that cannot be unpacked, or a config that would run code (see the module).
    """
    config_text, metadata = _read_members(path)
    config = parse_member(path, "config.json", config_text.encode())
    if any(marker in config_text for marker in _UNSAFE_MARKERS):
        raise ModelFileError(f"{path}: asks for unsafe deserialization; refused")
    for node in _walk(config):
        _check_object(path, node)
    return metadata


def _read_members(path: Path) -> tuple[str, bytes | None]:
    """config.json's text and dlcli.json's bytes (None when absent) of a bounded zip."""
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
            metadata = archive.read(METADATA_MEMBER) if METADATA_MEMBER in names else None
    except zipfile.BadZipFile as error:
        raise ModelFileError(
            f"{path}: not a Keras model file (not a zip archive: truncated or corrupt?)"
        ) from error
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        # a damaged deflate stream, an unknown compression method, an encrypted member
        raise ModelFileError(
            f"{path}: not a Keras model file (cannot be unpacked: {error})"
        ) from error
    return config_text, metadata


def _check_object(path: Path, node: dict[str, Any]) -> None:
    """Refuse one serialized object that is not Keras's own or would run code."""
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
