"""Turns on shared chunks: blocks whose writes cover part of the same chunk write one at a time.

A region of a larger array that starts off its chunk grid cannot be cut into blocks that keep
apart on chunks: every block border cuts chunks that two blocks write part of, and a store
writes a part of a chunk by reading the chunk, changing it and writing it back, so two such
writes at once lose one of them. In one process this is solved without giving up parallelism:
a block takes, all at once, the chunks it writes only part of, and waits while another block
holds any of them. Taking all at once (never one after the other) cannot deadlock.

The chunks are given back when the write has really ended: a write that runs in a thread goes
on after its block was cancelled (a ``block_timeout``), and a neighbour's read-modify-write of
the same chunk meanwhile would be overwritten by it. Time spent waiting for a turn is not
charged to the block's ``block_timeout`` (``block_deadline``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..sources.indexing import Roi
from .block_deadline import not_charged

ChunkIndex = tuple[int, ...]
T = TypeVar("T")


def _axis_partial_chunks(start: int, stop: int, extent: int, grain: int, offset: int) -> list[int]:
    """Indices (chunk k spans ``offset + k*grain`` to the next border) of the chunks on one
    axis that [start, stop) touches without covering all of their part inside [0, extent)."""
    partial = []
    for k in _axis_chunks(start, stop, grain, offset):
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
    touched = [_axis_chunks(r.start, r.stop, g, o) for r, g, o in zip(roi, grain, offset)]
    chunks: set[ChunkIndex] = set()
    for axis, s in enumerate(roi):
        partial = _axis_partial_chunks(s.start, s.stop, shape[axis], grain[axis], offset[axis])
        if partial:
            ranges: list[Sequence[int]] = [*touched[:axis], partial, *touched[axis + 1 :]]
            chunks.update(itertools.product(*ranges))
    return frozenset(chunks)


class ChunkGuard:
    """Writes of blocks that share chunks take turns; all others run at once."""

    def __init__(self, shape: Sequence[int], grain: Sequence[int], offset: Sequence[int]):
        self.shape = tuple(shape)
        self.grain = tuple(grain)
        self.offset = tuple(offset)
        self._held: set[ChunkIndex] = set()
        self._waiting: list[asyncio.Future[None]] = []
        #: how many writes had to wait for another block's (for RunStats)
        self.waits = 0

    async def write(self, roi: Roi, write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write()`` (which writes ``roi``, reading what it must) holding the chunks it
        writes only part of, until it has ended, even if this call is cancelled."""
        wanted = shared_chunks(roi, self.shape, self.grain, self.offset)
        if not wanted:
            return await write()
        await self._acquire(wanted)
        try:
            task = asyncio.ensure_future(write())
        except BaseException:
            self._release(wanted)
            raise
        task.add_done_callback(lambda done: self._ended(done, wanted))
        return await asyncio.shield(task)

    async def _acquire(self, wanted: frozenset[ChunkIndex]) -> None:
        if not self._held.isdisjoint(wanted):
            self.waits += 1
            with not_charged():
                while not self._held.isdisjoint(wanted):
                    turn = asyncio.get_running_loop().create_future()
                    self._waiting.append(turn)
                    try:
                        await turn
                    finally:
                        if turn in self._waiting:
                            self._waiting.remove(turn)
        self._held |= wanted

    def _ended(self, done: asyncio.Future[Any], chunks: frozenset[ChunkIndex]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: the caller may have been cancelled meanwhile
        self._release(chunks)

    def _release(self, chunks: frozenset[ChunkIndex]) -> None:
        self._held -= chunks
        waiting, self._waiting = self._waiting, []
        for turn in waiting:
            if not turn.done():
                turn.set_result(None)
