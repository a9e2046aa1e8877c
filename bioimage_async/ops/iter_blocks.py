"""iter_blocks: stream blocks to the caller with bounded read-ahead."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from ..blocking.defaults import default_block_shape
from ..blocking.grid import Block, BlockGrid
from ..sources.registry import as_source


async def iter_blocks(
    source: Any,
    block_shape: Any = None,
    *,
    halo: Any = None,
    prefetch: int = 4,
    block_ids: Any = None,
) -> AsyncIterator[tuple[Block, np.ndarray]]:
    """Yield ``(block, data)`` in block-id order; data includes the halo (``block.outer_roi``).

    At most ``prefetch`` blocks are read ahead of the consumer, so memory stays bounded however
    slowly the caller consumes. Breaking out of the loop cancels the pending reads.
    """
    src = as_source(source)
    if block_shape is None:
        block_shape = default_block_shape(src.shape, src.dtype.itemsize, src.chunks)
    if halo is not None and isinstance(halo, int):
        halo = (halo,) * src.ndim
    grid = BlockGrid(src.shape, block_shape, halo)
    ids = iter(grid.check_ids(block_ids) if block_ids is not None else range(grid.num_blocks))
    pending: deque[tuple[Block, asyncio.Task[np.ndarray]]] = deque()

    def schedule() -> None:
        while len(pending) < max(1, prefetch):
            block_id = next(ids, None)
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
