"""One block, start to finish: mask check, read, compute, merge with the mask, write.

Shared by the local pipeline and the distributed worker, so both backends compute identically.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np

from ..context import run_blocking
from ..kernels.casting import cast_checked, lossless
from ..sources.indexing import Roi, roi_shape
from .buffers import BufferPool
from .chunk_guard import ChunkGuard
from .compute_pool import block_where, compute_block
from .stats import RunStats
from .task import BlockTask

T = TypeVar("T")

#: (block id, input region, the block's mask where it is partial) -> (result, compute seconds)
Compute = Callable[[int, np.ndarray, np.ndarray | None], Awaitable[tuple[np.ndarray, float]]]


def threaded_compute(task: BlockTask) -> Compute:
    """A Compute that runs the kernel in the blocking thread pool, off the event loop.

    Used for cheap numpy work locally and for all compute in distributed workers (where the
    worker process is the unit of parallelism and reads overlap compute through threads).
    """

    def timed(block_id: int, data: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, float]:
        started = time.perf_counter()  # inside the thread: queueing is not compute
        block = task.grid.block(block_id)
        result = compute_block(task.kernel, block, data, task.output.dtype, task.casting, mask)
        return result, time.perf_counter() - started

    async def compute(
        block_id: int, data: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, float]:
        return await run_blocking(timed, block_id, data, mask)

    return compute


def _lossless(task: BlockTask) -> bool:
    """Whether input values always fit the output dtype (tensorstore's own cast may then copy
    chunk to chunk; otherwise values go through the checked cast in numpy)."""
    return lossless(task.input.dtype, task.output.dtype)


def _cast(
    task: BlockTask, block_id: int, values: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """``values`` in the output dtype, checked only where ``mask`` (if any) writes them."""
    if values.dtype == task.output.dtype:
        return values
    where = block_where(task.grid.block(block_id))
    return cast_checked(values, task.output.dtype, task.casting, where, inside=mask)


async def execute_block(
    task: BlockTask,
    block_id: int,
    compute: Compute | None,
    stats: RunStats,
    buffers: BufferPool | None = None,
    guard: ChunkGuard | None = None,
) -> bool:
    """Process one block; returns False when an empty mask made it skip (nothing read/written).

    With ``guard``, the block's writes wait while another block writes part of a chunk that
    it writes part of (see ``pipeline.chunk_guard``).

    With ``buffers`` (and a kernel whose input is scratch), the input region is read into a
    pooled buffer, given back once the compute is done (once the block is written if the
    result is a view of it; dropped if the block fails).
    """
    if buffers is None or not (task.kernel.needs_compute and task.kernel.input_is_scratch):
        return await _execute(task, block_id, compute, stats, None, guard)
    held: list[np.ndarray] = []
    done = await _execute(task, block_id, compute, stats, (buffers, held), guard)
    # only now: after a failure, a timeout or a cancel, a read (tensorstore's copy) or a compute
    # thread may still be using the buffer, so it is dropped, never handed to another block
    for buffer in held:
        buffers.give(buffer)
    return done


async def _guarded(guard: ChunkGuard | None, roi: Roi, write: Callable[[], Awaitable[T]]) -> T:
    """``write()``, taking turns with blocks that write part of the same chunks (if any)."""
    return await write() if guard is None else await guard.write(roi, write)


async def _read_input(
    task: BlockTask, roi: Roi, pooled: tuple[BufferPool, list[np.ndarray]] | None
) -> np.ndarray:
    if pooled is None:
        return await task.input.read_roi(roi)
    pool, held = pooled
    data, buffer = pool.take(roi_shape(roi), task.input.dtype)
    held.append(buffer)
    await task.input.read_roi_into(roi, data)
    return data


async def _execute(
    task: BlockTask,
    block_id: int,
    compute: Compute | None,
    stats: RunStats,
    pooled: tuple[BufferPool, list[np.ndarray]] | None,
    guard: ChunkGuard | None = None,
) -> bool:
    block = task.grid.block(block_id)
    mask = partial = None
    if task.mask is not None:
        mask = np.asarray(await task.mask.read_roi(block.roi), dtype=bool)
        if not mask.any():
            return False
        # voxels outside it keep the output's old values: the cast checks only those inside
        partial = None if mask.all() else mask
    started = time.perf_counter()
    if mask is None and not task.kernel.needs_compute and _lossless(task):
        files_before = getattr(task.output, "raw_chunk_files", 0)
        copied = await _guarded(
            guard, block.roi, lambda: task.output.copy_region_from(block.roi, task.input, block.roi)
        )
        if copied:
            stats.write_s += time.perf_counter() - started
            nbytes = int(np.prod(block.shape)) * task.output.dtype.itemsize
            stats.bytes_read += nbytes
            stats.bytes_written += nbytes
            # only blocks moved as chunk files count as raw; tensorstore's chunk-to-chunk
            # copy decodes and re-encodes
            moved = getattr(task.output, "raw_chunk_files", 0) != files_before
            key = "raw_copied_blocks" if moved else "store_copied_blocks"
            stats.extra[key] = stats.extra.get(key, 0.0) + 1
            return True
    data = await _read_input(task, task.kernel.input_roi(block), pooled)
    stats.read_s += time.perf_counter() - started
    stats.bytes_read += data.nbytes
    if task.kernel.needs_compute:
        if compute is None:
            compute = threaded_compute(task)
        result, seconds = await compute(block_id, data, partial)
        stats.compute_s += seconds
    else:
        result = data
    if pooled is not None and not np.shares_memory(result, data):
        pool, held = pooled  # the input is no longer needed: the next block may read into it
        while held:
            pool.give(held.pop())
    del data
    values = _cast(task, block_id, result, partial)

    async def write() -> None:
        merged = values
        if partial is not None:  # read within the turn: a store reads whole chunks, which a
            # neighbour may be rewriting (cloud-volume's files are rewritten in place)
            merged = np.where(partial, values, await task.output.read_roi(block.roi))
        await task.output.write_roi(block.roi, merged, casting="unsafe")

    started = time.perf_counter()
    await _guarded(guard, block.roi, write)
    stats.write_s += time.perf_counter() - started
    stats.bytes_written += result.nbytes
    return True
