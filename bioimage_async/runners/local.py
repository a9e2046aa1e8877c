"""The local backend: the streaming pipeline in this process, compute in a process pool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from ..blocking.safety import plan_writes
from ..errors import RunnerError
from ..pipeline.compute_pool import ComputePool
from ..pipeline.engine import run_blocks
from ..pipeline.execute import Compute, execute_block, threaded_compute
from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .base import Runner

logger = logging.getLogger("bioimage_async")


def default_in_flight(cost: str, num_workers: int) -> int:
    """Enough blocks in flight to overlap I/O with compute, no more."""
    if cost == "none":
        return min(16, max(8, 4 * num_workers))
    if cost == "light":
        return 2 * num_workers + 2
    return 2 * num_workers + 1


class LocalRunner(Runner):
    """Runs every block in this process's event loop (CPU work in a spawn/forkserver pool)."""

    async def run(  # type: ignore[override]
        self,
        task: BlockTask,
        *,
        block_ids: Sequence[int] | None,
        num_workers: int,
        progress: ProgressArg,
        stats: RunStats,
        resume_from: str | None = None,
        wait: bool = True,
    ) -> None:
        ids = task.grid.check_ids(block_ids) if block_ids is not None else None
        total = len(ids) if ids is not None else task.grid.num_blocks
        cost = task.kernel.compute_cost
        in_flight = self.config.in_flight or default_in_flight(cost, num_workers)
        block_bytes = task.bytes_per_block()
        if block_bytes > self.config.memory_budget:
            logger.warning(
                "one block of %r holds %.0f MiB, more than memory_budget (%.0f MiB); pass a "
                "smaller block_shape than %s",
                task.name,
                block_bytes / 2**20,
                self.config.memory_budget / 2**20,
                task.grid.block_shape,
            )
        in_flight = max(1, min(in_flight, self.config.memory_budget // max(1, block_bytes)))
        plan = plan_writes(
            task.grid,
            task.output.chunks,
            task.output.shards,
            getattr(task.output, "grid_offset", None),
            concurrent=in_flight > 1 and not task.output.serializes_writes,
            output_name=task.output.describe(),
        )
        pool = (
            ComputePool(task.kernel, task.grid, task.output.dtype, num_workers)
            if (cost == "heavy")
            else None
        )
        compute: Compute | None = (
            pool.compute
            if pool is not None
            else (threaded_compute(task) if cost == "light" else None)
        )
        done = np.zeros(task.grid.num_blocks, dtype=bool)

        def mark(block_id: int) -> None:
            done[block_id] = True

        try:
            outcome = await run_blocks(
                plan.groups(ids),
                lambda block_id: execute_block(task, block_id, compute, stats),
                total=total,
                in_flight=in_flight,
                progress=progress,
                stats=stats,
                name=task.name,
                on_done=mark,
            )
        except BaseException as error:
            if pool is not None:
                await asyncio.shield(pool.aclose(kill=True))
            if isinstance(error, asyncio.CancelledError):
                wanted = np.zeros_like(done)
                wanted[ids if ids is not None else slice(None)] = True
                missing = np.flatnonzero(wanted & ~done)
                logger.warning(
                    "run %r cancelled: %d of %d blocks missing (first: %s); finished blocks are "
                    "written. Re-run the missing ones with block_ids=.",
                    task.name,
                    missing.size,
                    total,
                    missing[:10].tolist(),
                )
            raise
        if pool is not None:
            await pool.aclose(kill=False)
        if outcome.failed:
            raise RunnerError.for_blocks(task.name, outcome.failed, outcome.first_error)
