"""iter_blocks: stream blocks to the caller with bounded read-ahead."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from ..blocking.defaults import default_block_shape
from ..blocking.grid import Block, BlockGrid
from ..errors import InvalidArgumentError
from ..runners.options import block_id_list
from ..sources.base import Source
from ..sources.registry import as_source
from .copy import positive_int_tuple
from .map_blocks import halo_tuple


class BlockStream:
    """``async for block, data in stream``: blocks in id order with at most ``prefetch`` reads
    ahead of the consumer, so memory stays bounded however slowly the caller consumes.

    Each ``async for`` gets its own generator, held only by the loop: breaking out of the loop
    releases it, which closes it and cancels the pending reads, even when the caller keeps a
    reference to this stream. ``async with`` (or ``await stream.aclose()``) closes explicitly.
    """

    def __init__(
        self, source: Source, grid: BlockGrid, ids: tuple[int, ...] | None, prefetch: int
    ) -> None:
        self.source = source
        self.grid = grid
        self.ids = ids
        self.prefetch = prefetch
        self._direct: AsyncIterator[tuple[Block, np.ndarray]] | None = None

    def __aiter__(self) -> AsyncIterator[tuple[Block, np.ndarray]]:
        return _stream(self.source, self.grid, self.ids, self.prefetch)

    async def __anext__(self) -> tuple[Block, np.ndarray]:
        """Step without ``async for`` (close with ``aclose()`` when stopping early)."""
        if self._direct is None:
            self._direct = self.__aiter__()
        return await self._direct.__anext__()

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> BlockStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _stream(
    src: Source, grid: BlockGrid, ids: tuple[int, ...] | None, prefetch: int
) -> AsyncIterator[tuple[Block, np.ndarray]]:
    order = iter(ids if ids is not None else range(grid.num_blocks))
    pending: deque[tuple[Block, asyncio.Task[np.ndarray]]] = deque()

    def schedule() -> None:
        while len(pending) < prefetch:
            block_id = next(order, None)
            if block_id is None:
                return
            block = grid.block(block_id)
            pending.append((block, asyncio.ensure_future(src.read_roi(block.outer_roi))))

    try:
        schedule()
        while pending:
            block, future = pending.popleft()
            data = await future
            schedule()
            yield block, data
    finally:
        for _, future in pending:
            future.cancel()
        if pending:
            await asyncio.gather(*(f for _, f in pending), return_exceptions=True)


def iter_blocks(
    source: Any,
    block_shape: Any = None,
    *,
    halo: Any = None,
    prefetch: int = 4,
    block_ids: Any = None,
) -> BlockStream:
    """Stream ``(block, data)`` in block-id order; data includes the halo (``block.outer_roi``).

    At most ``prefetch`` blocks are read ahead of the consumer, so memory stays bounded however
    slowly the caller consumes. Breaking out of the loop cancels the pending reads.
    """
    src = as_source(source)
    if block_shape is None:
        block_shape = default_block_shape(src.shape, src.dtype.itemsize, src.chunks)
    else:
        block_shape = positive_int_tuple(block_shape, "block_shape")
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
        raise InvalidArgumentError(f"prefetch must be an integer >= 1, got {prefetch!r}")
    grid = BlockGrid(src.shape, block_shape, None if halo is None else halo_tuple(halo, src.ndim))
    ids = None if block_ids is None else tuple(grid.check_ids(block_id_list(block_ids)))
    return BlockStream(src, grid, ids, prefetch)
