"""Base for sources whose library blocks: every call runs in the bounded thread pool.

Libraries that are not thread-safe for one file handle (h5py, tifffile, nibabel) serialise their
calls with a per-source lock taken inside the worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
from abc import abstractmethod

import numpy as np

from ..context import run_blocking
from .base import Source
from .indexing import Roi


class ThreadedSource(Source):
    """A source that reads/writes through a blocking library in the shared thread pool."""

    #: Whether concurrent calls on one handle must be serialised.
    serialize_calls: bool = True

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def serializes_writes(self) -> bool:
        return self.serialize_calls

    def _locked(self, fn, *args):  # type: ignore[no-untyped-def]
        if not self.serialize_calls:
            return fn(*args)
        with self._lock:
            return fn(*args)

    async def _read(self, roi: Roi) -> np.ndarray:
        return await run_blocking(self._locked, self.read_blocking, roi)

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        await run_blocking(self._locked, self.write_blocking, roi, value)

    @abstractmethod
    def read_blocking(self, roi: Roi) -> np.ndarray:
        """Read a normalised region; runs in a worker thread."""

    def write_blocking(self, roi: Roi, value: np.ndarray) -> None:
        """Write a normalised region; runs in a worker thread."""
        raise NotImplementedError
