"""Turns on shared chunks: blocks whose writes cover part of the same chunk write one at a time.

A region of a larger array that starts off its chunk grid cannot be cut into blocks that keep
apart on chunks: every block border cuts chunks that two blocks write part of, and a store
writes a part of a chunk by reading the chunk, changing it and writing it back, so two such
writes at once lose one of them. In one process this is solved without giving up parallelism:
a block takes, all at once, the chunks it writes only part of, and waits while another block
holds any of them. Taking all at once (never one after the other) cannot deadlock.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ..sources.indexing import Roi

ChunkIndex = tuple[int, ...]


def _axis_partial_chunks(start: int, stop: int, extent: int, grain: int, offset: int) -> list[int]:
    """Indices (chunk k spans ``offset + k*grain`` to the next border) of the chunks on one
    axis that [start, stop) touches without covering all of their part inside [0, extent)."""
    first = (start - offset) // grain
    last = (stop - 1 - offset) // grain
    partial = []
    for k in range(first, last + 1):
        lo = max(offset + k * grain, 0)
        hi = min(offset + (k + 1) * grain, extent)
        if lo < start or hi > stop:
            partial.append(k)
    return partial


def _axis_chunks(start: int, stop: int, grain: int, offset: int) -> range:
    return range((start - offset) // grain, (stop - 1 - offset) // grain + 1)


def shared_chunks(
    roi: Roi, shape: Sequence[int], grain: Sequence[int], offset: Sequence[int]
) -> frozenset[ChunkIndex]:
    """The chunks that ``roi`` writes only part of (of the volume's part of them): exactly
    the chunks another block may write too."""
    if any(s.stop <= s.start for s in roi):
        return frozenset()
    chunks: set[ChunkIndex] = set()
    for axis, s in enumerate(roi):
        partial = _axis_partial_chunks(s.start, s.stop, shape[axis], grain[axis], offset[axis])
        if not partial:
            continue
        ranges: list[Sequence[int]] = [
            _axis_chunks(r.start, r.stop, g, o) for r, g, o in zip(roi, grain, offset)
        ]
        ranges[axis] = partial
        chunks.update(itertools.product(*ranges))
    return frozenset(chunks)


class ChunkGuard:
    """Writes of blocks that share chunks take turns; all others run at once."""

    def __init__(self, shape: Sequence[int], grain: Sequence[int], offset: Sequence[int]):
        self.shape = tuple(shape)
        self.grain = tuple(grain)
        self.offset = tuple(offset)
        self._held: set[ChunkIndex] = set()
        self._changed = asyncio.Condition()
        #: how many writes had to wait for another block's (for RunStats)
        self.waits = 0

    @asynccontextmanager
    async def holding(self, roi: Roi) -> AsyncIterator[None]:
        """Hold the chunks ``roi`` writes only part of while the body writes it."""
        wanted = shared_chunks(roi, self.shape, self.grain, self.offset)
        if not wanted:
            yield
            return
        async with self._changed:
            if not self._held.isdisjoint(wanted):
                self.waits += 1
                await self._changed.wait_for(lambda: self._held.isdisjoint(wanted))
            self._held |= wanted
        try:
            yield
        finally:
            # shielded: a cancelled write must still give its chunks back, or its neighbours
            # would wait for ever
            await asyncio.shield(self._release(wanted))

    async def _release(self, chunks: frozenset[ChunkIndex]) -> None:
        async with self._changed:
            self._held -= chunks
            self._changed.notify_all()
