"""The streaming engine: a fixed number of worker coroutines pull work items from one iterator.

Never one task per block: a million-block volume costs a million iterator steps, not a million
asyncio tasks. The number of worker coroutines is the in-flight bound, so the memory a run holds
is (in-flight blocks) x (bytes per block), whatever the volume size. Reads and writes are async,
compute goes to the process pool, so I/O of some blocks overlaps compute of others.

A failing block is recorded and the others go on; cancellation (of the awaiting task, or Ctrl-C
under ``ba.sync``) stops pulling new blocks at once and cancels the in-flight ones.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .progress import Progress, ProgressArg
from .stats import RunStats

ProcessBlock = Callable[[int], Awaitable[bool]]


@dataclass
class PipelineOutcome:
    """Which blocks failed (sorted) and the first traceback, for the RunnerError."""

    failed: list[int] = field(default_factory=list)
    first_error: str | None = None


def describe_error(block_id: int, error: BaseException) -> str:
    """The traceback that explains a block's failure (the worker's, for remote compute)."""
    remote = getattr(error, "remote_traceback", None)
    text = remote or "".join(traceback.format_exception(error))
    return f"block {block_id}: {text}"


async def run_blocks(
    work: Iterable[Sequence[int]],
    process: ProcessBlock,
    *,
    total: int,
    in_flight: int,
    progress: ProgressArg = None,
    stats: RunStats | None = None,
    name: str = "run",
    on_done: Callable[[int], None] | None = None,
) -> PipelineOutcome:
    """Run ``process(block_id)`` over every block of ``work`` with at most ``in_flight`` at once.

    Each work item is a list of block ids processed in order by one worker coroutine (blocks
    that share an output shard must not be written concurrently).
    """
    stats = stats if stats is not None else RunStats(name=name)
    stats.blocks_total = total
    outcome = PipelineOutcome()
    bar = Progress(progress, total, name)
    items: Iterator[Sequence[int]] = iter(work)
    active = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal active
        for group in items:  # shared iterator: next() has no await, so each item goes once
            for block_id in group:
                active += 1
                stats.max_in_flight = max(stats.max_in_flight, active)
                try:
                    written = await process(block_id)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - one block's failure must not stop the others
                    outcome.failed.append(block_id)
                    stats.blocks_failed += 1
                    if outcome.first_error is None:
                        outcome.first_error = describe_error(block_id, error)
                else:
                    if written:
                        stats.blocks_done += 1
                    else:
                        stats.blocks_skipped += 1
                    if on_done is not None:
                        on_done(block_id)
                finally:
                    active -= 1
                bar.advance()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, in_flight)):
                group.create_task(worker())
    finally:
        bar.close()
        stats.wall_s = time.perf_counter() - started
        stats.log()
    outcome.failed.sort()
    return outcome
