"""The one way dlcli writes a file: all of it or nothing, with the mode the user's umask gives.

Every file goes through `replacing`: a temporary file in the same folder, flushed to disk, given
the umask's mode (a temporary file is created 0600) and moved into place with `os.replace`, so
that a reader never sees half a file and an earlier file survives a failed write. Only the
standard library is imported here: `dlcli.catalog` writes through it on `dlcli validate`.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from dlcli.errors import OutputError


@functools.cache
def file_mode() -> int:
    """The mode `open()` gives a new file under the user's umask (read once: setting the umask
    is the only way to read it)."""
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def replacing(path: Path, *, suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """A temporary file beside `path` that replaces `path` once the block ends without error.

    Write into the handle, or write the file by its name (`handle.name`) for a writer that
    takes a path; `suffix` is the temporary file's ending (Keras saves only to `.keras`).

    Raises:
        OutputError: "cannot write PATH: reason" when the folder cannot be written (disk
            full, read-only); the temporary file is removed and an earlier file at `path` is
            left as it was. Exceptions other than OSError pass through, also removing it.

    Example:
        with replacing(Path("runs/mnist-1/metrics.json")) as handle:
            handle.write(b'{"loss": 0.1}')
    """
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix, delete=False
        ) as handle:
            temporary = Path(handle.name)
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), file_mode())
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if temporary is not None:
            with suppress(OSError):
                temporary.unlink()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `replacing`: all of it, or the earlier file stays.

    Raises:
        OutputError: the folder cannot be written; an earlier file at `path` is left as it was.

    Example:
        atomic_write(Path("runs/mnist-1/metrics.json"), b'{"loss": 0.1}')
    """
    with replacing(path) as handle:
        handle.write(data)
