"""Sources for pipeline tests: a generated volume and a sink, so no test data is held in RAM."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bioimage_async.sources.base import Source
from bioimage_async.sources.indexing import Roi


class GeneratedSource(Source):
    """A large virtual uint8 volume whose voxels are computed on read (index sum mod 251)."""

    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
        self._shape, self._chunks = shape, chunks

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return np.dtype(np.uint8)

    @property
    def chunks(self):
        return self._chunks

    async def _read(self, roi: Roi) -> np.ndarray:
        await asyncio.sleep(0)
        grids = np.ogrid[tuple(roi)]
        return (sum(grids) % 251).astype(np.uint8)


class SinkSource(Source):
    """A writable sink that checks what it receives and keeps only a checksum."""

    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...], delay: float = 0.0) -> None:
        self._shape, self._chunks, self.delay = shape, chunks, delay
        self.checksum = 0
        self.blocks = 0

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return np.dtype(np.uint8)

    @property
    def chunks(self):
        return self._chunks

    @property
    def writable(self) -> bool:
        return True

    async def _read(self, roi: Roi) -> np.ndarray:
        return np.zeros(tuple(s.stop - s.start for s in roi), np.uint8)

    async def _write(self, roi: Roi, value: np.ndarray) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.checksum += int(value.sum(dtype=np.int64))
        self.blocks += 1


def slow_identity(block: np.ndarray) -> np.ndarray:
    time.sleep(0.5)
    return block
