"""Unpickle numpy arrays and nothing else, reading a bounded number of bytes.

A pickle is code: unpickling calls whatever globals it names. `load_numpy_pickle` admits only
the globals that rebuild plain numpy arrays, so a tampered file cannot run anything such as
`os.system` or `builtins.eval`, and stops reading past a byte limit, so that a gzip stream that
expands without bound (a decompression bomb) ends in an error instead of filling memory.
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol

import numpy as np

# numpy's array reconstructor, wherever this numpy version keeps it (numpy.core or numpy._core).
_RECONSTRUCT_ARRAY = np.empty(0).__reduce__()[0]
# The only globals a pickle of plain numpy arrays needs, under both numpy 1 and numpy 2 names.
_ADMITTED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT_ARRAY,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT_ARRAY,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BinaryReader(Protocol):
    """What the unpickler reads: `read` and `readline` of bytes (a binary file, a GzipFile)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


def load_numpy_pickle(stream: BinaryReader, limit: int) -> object:
    """The object pickled in `stream`, built of numpy arrays, tuples, lists and plain values.

    Args:
        stream: a binary stream holding one pickle (protocol 0 to 5; Python 2 strings are read
            as latin-1).
        limit: the most bytes read from `stream`.

    Raises:
        pickle.UnpicklingError: the pickle names a global other than numpy's array builders.
        ValueError: more than `limit` bytes came through.
        EOFError, OSError, TypeError: the stream is truncated or damaged.
    """
    return _NumpyOnlyUnpickler(_BoundedReader(stream, limit)).load()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and refuses every other global.

    Unpickling calls whatever the pickle names, so an arbitrary pickle is arbitrary code.
    Admitting only the reconstruction of plain arrays (`_ADMITTED_GLOBALS`) means a tampered
    file cannot run anything such as `os.system` or `builtins.eval`.
    """

    def __init__(self, stream: _BoundedReader) -> None:
        # Written by Python 2: its str objects, including array bytes, are decoded as latin-1.
        super().__init__(stream, encoding="latin-1")

    def find_class(self, module: str, name: str) -> Any:
        """Return an admitted global, or raise UnpicklingError naming the refused one."""
        admitted = _ADMITTED_GLOBALS.get((module, name))
        if admitted is None:
            raise pickle.UnpicklingError(
                f"refused to unpickle {module}.{name}: only numpy arrays are admitted"
            )
        return admitted


class _BoundedReader:
    """Binary reader that fails once more than `limit` bytes have come through it.

    Guards the unpickler against a decompression bomb: gzip can expand without bound.
    """

    def __init__(self, stream: BinaryReader, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._remaining = limit

    def read(self, size: int = -1) -> bytes:
        """Read like `stream.read`, but never past one byte beyond the limit."""
        return self._count(self._stream.read(self._allowance(size)))

    def readline(self, size: int = -1) -> bytes:
        """Read like `stream.readline`, but never past one byte beyond the limit."""
        return self._count(self._stream.readline(self._allowance(size)))

    def _allowance(self, size: int) -> int:
        """Cap a read at one byte past the limit, so that crossing it is seen."""
        allowance = self._remaining + 1
        return allowance if size < 0 else min(size, allowance)

    def _count(self, data: bytes) -> bytes:
        """Charge `data` against the limit; raise ValueError once the limit is crossed."""
        self._remaining -= len(data)
        if self._remaining < 0:
            raise ValueError(f"more than {self._limit:,} bytes once decompressed")
        return data
