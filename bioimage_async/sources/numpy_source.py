"""In-memory numpy arrays as sources (local runs only: they have no reopenable spec)."""

from __future__ import annotations

import numpy as np

from .base import Source
from .indexing import Roi


class NumpySource(Source):
    """A numpy array; reads return copies so callers may reuse or mutate them freely."""

    kind = "numpy"

    def __init__(self, array: np.ndarray, *, writable: bool | None = None) -> None:
        self.array = array
        self._writable = bool(array.flags.writeable) if writable is None else writable

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def read_only_reason(self) -> str:
        return "the numpy array is not writeable (array.flags.writeable is False)"

    @property
    def serializes_writes(self) -> bool:
        return True  # one process, no chunks: writes of disjoint blocks never interfere

    def describe(self) -> str:
        return f"numpy array of shape {self.shape} and dtype {self.dtype}"

    async def _read(self, roi: Roi) -> np.ndarray:
        return np.array(self.array[roi], copy=True)

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        self.array[roi] = value
