"""Test helpers: sources that count their reads, and block functions importable by workers."""

from __future__ import annotations

import numpy as np

from bioimage_async.sources.base import Source
from bioimage_async.sources.indexing import Roi


class CountingSource(Source):
    """Wraps a source and records every region read (to prove what a run did not read)."""

    def __init__(self, inner: Source) -> None:
        self.inner = inner
        self.reads: list[Roi] = []

    @property
    def shape(self):
        return self.inner.shape

    @property
    def dtype(self):
        return self.inner.dtype

    @property
    def chunks(self):
        return self.inner.chunks

    async def _read(self, roi: Roi) -> np.ndarray:
        self.reads.append(roi)
        return await self.inner.read_roi(roi)


def invert(block: np.ndarray) -> np.ndarray:
    return 255 - block


def fail_on_bright_blocks(block: np.ndarray) -> np.ndarray:
    """Raises for blocks whose mean is high: the failing set is known from the data."""
    if block.mean() > 200:
        raise RuntimeError("bright block")
    return block
