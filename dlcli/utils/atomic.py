"""The one way dlcli writes a file: all of it or nothing, with the mode the user's umask gives.

Every file goes through `replacing`: a temporary file beside it (`.NAME.tmp`), flushed to disk,
given the umask's mode and moved into place with `os.replace`, so that a reader never sees half
a file and an earlier file survives a failed write. The temporary file's name is fixed, so a
process killed while writing leaves no litter: the next write of the same file reuses it. Two
processes writing the same file (a shared cache) take turns, by an OS lock on the temporary
file. Only the standard library is imported here: `dlcli.spec.keras_catalog` writes through it on
`dlcli validate`.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


def temporary_path(path: Path, suffix: str = "") -> Path:
    """Where `replacing` writes `path` before moving it into place.

    Example:
        >>> temporary_path(Path("runs/x-1/model.keras"), ".keras")
        PosixPath('runs/x-1/.model.keras.tmp.keras')
    """
    return path.parent / f".{path.name}.tmp{suffix}"


@contextmanager
def replacing(path: Path, *, suffix: str = "") -> Iterator[IO[bytes]]:
    """A temporary file beside `path` that replaces `path` once the block ends without error.

    Write into the handle, or write the file by its name (`handle.name`) for a writer that
    takes a path; `suffix` ends the temporary file's name (Keras saves only to `.keras`).

    Raises:
        OutputError: "cannot write PATH: reason" when the folder cannot be written (disk
            full, read-only); the temporary file is removed and an earlier file at `path` is
            left as it was. Exceptions other than OSError pass through, also removing it.

    Example:
        with replacing(Path("runs/mnist-1/metrics.json")) as handle:
            handle.write(b'{"loss": 0.1}')
    """
    temporary = temporary_path(path, suffix)
    owned = False
    try:
        with _claimed(temporary) as handle:
            owned = True
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), file_mode())
            os.fsync(handle.fileno())
            os.replace(temporary, path)
            owned = False
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if owned:
            temporary.unlink(missing_ok=True)


@contextmanager
def _claimed(temporary: Path) -> Iterator[IO[bytes]]:
    """The temporary file, empty and locked by this process until the block ends.

    Another process writing the same file holds its lock until it has moved the file into
    place: wait for it, then start again on a new file. One killed while writing left its
    file unlocked: reuse it.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        descriptor = os.open(temporary, flags, file_mode())
        handle = os.fdopen(descriptor, "w+b")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                current = os.stat(temporary).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                current = False
            if current:  # not a file that another process has already moved into place
                handle.truncate(0)
                handle.raw.name = str(temporary)  # type: ignore[attr-defined]  # for writers by path
                yield handle
                return
        finally:
            handle.close()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through `replacing`: all of it, or the earlier file stays.

    Raises:
        OutputError: the folder cannot be written; an earlier file at `path` is left as it was.

    Example:
        atomic_write(Path("runs/mnist-1/metrics.json"), b'{"loss": 0.1}')
    """
    with replacing(path) as handle:
        handle.write(data)
