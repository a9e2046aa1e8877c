"""as_source() of a zarr-python array: local arrays are reopened through tensorstore.

zarr-python does every block's I/O under the GIL (4.5-5x slower than tensorstore on a copy, see
../shared/notes); reopening the same files through tensorstore keeps the user's handle as the
way to name an array and gives the pipeline the fast path. Arrays in stores tensorstore cannot
reach (memory, custom stores) fall back to the zarr handle in the blocking thread pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._loop import run_sync
from .base import Source
from .indexing import Roi
from .threaded import ThreadedSource


class ZarrPythonSource(ThreadedSource):
    """Fallback: a zarr-python array read and written in the blocking thread pool."""

    kind = "zarr_python"
    serialize_calls = False

    def __init__(self, array: Any) -> None:
        super().__init__()
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return tuple(self.array.chunks)

    @property
    def writable(self) -> bool:
        return not getattr(self.array, "read_only", False)

    def describe(self) -> str:
        return f"zarr-python array {getattr(self.array, 'name', '')}"

    def read_blocking(self, roi: Roi) -> np.ndarray:
        return np.asarray(self.array[roi])

    def write_blocking(self, roi: Roi, value: np.ndarray) -> None:
        self.array[roi] = value


def _local_root(array: Any) -> Path | None:
    store = getattr(array, "store", None)
    root = getattr(store, "root", None)
    if root is None:
        return None
    return Path(str(root))


def wrap_zarr_array(array: Any) -> Source:
    root = _local_root(array)
    if root is None:
        return ZarrPythonSource(array)
    from .tensorstore_source import open_tensorstore

    mode = "r" if getattr(array, "read_only", False) else "r+"
    key = str(getattr(array, "path", "") or "")
    # as_source is synchronous; opening is a fast metadata read, done on the background loop
    # (which also works when the caller is itself inside a running event loop).
    return run_sync(open_tensorstore(str(root), key or None, format="zarr", mode=mode))
