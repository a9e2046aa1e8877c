"""The streaming engine: a fixed number of worker coroutines pull work items from one iterator.

Never one task per block: a million-block volume costs a million iterator steps, not a million
asyncio tasks. The number of worker coroutines is the in-flight bound, so the memory a run holds
is (in-flight blocks) x (bytes per block), whatever the volume size. Reads and writes are async,
compute goes to the process pool, so I/O of some blocks overlaps compute of others.

A failing block is retried ``retries`` times, then recorded, and the others go on; a block whose
processing takes longer than ``block_timeout`` seconds fails like any other. Cancellation (of the
awaiting task, or Ctrl-C under ``ba.sync``) stops pulling new blocks at once and cancels the
in-flight ones.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import BlockCancelledError, BlockComputeError, BlockTimeoutError
from .block_deadline import deadline
from .progress import Progress, ProgressArg
from .stats import RunStats

ProcessBlock = Callable[[int], Awaitable[bool]]


def _run_is_cancelled() -> bool:
    """Whether a CancelledError is the run's own cancellation (of this task or its group),
    rather than a block's: a future cancelled inside a user's source or function reaches us
    as CancelledError too, and treating that as a cancel ended its worker coroutine quietly,
    dropping the block and the rest of its work item while the run reported success."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _as_block_error(block_id: int, error: asyncio.CancelledError) -> BlockCancelledError:
    return BlockCancelledError(
        f"block {block_id}: an operation inside it was cancelled ({error!r}) although the run "
        "was not: the block counts as failed (a source or function whose own request was "
        "cancelled, e.g. a backend timeout); re-run it with block_ids="
    )


def _as_block_exit(block_id: int, error: BaseException) -> BlockComputeError:
    """A block's failure from an exit its function raised (``sys.exit()`` in it, or in a
    library's fatal-error path): left alone, a SystemExit crossing a task ends the event loop,
    and with it a distributed worker, whose later blocks are then never run."""
    text = "".join(traceback.format_exception(error)).rstrip()
    return BlockComputeError(
        f"{text}\nblock {block_id}: the function raised {error!r} (sys.exit() in it or in a "
        "library it calls): the block counts as failed, the others go on"
    )


def _still_computing(
    block_id: int, error: Exception, still_running: Callable[[int], bool] | None
) -> bool:
    """Whether ``error`` is a timeout of a block whose compute thread is still busy with it."""
    return (
        isinstance(error, BlockTimeoutError)
        and still_running is not None
        and still_running(block_id)
    )


#: How many failed blocks keep their own error line in the outcome (the ids are all kept).
ERROR_LINES = 20


@dataclass
class PipelineOutcome:
    """Which blocks failed (sorted), the first traceback, and each failed block's last error
    line (for the first ``ERROR_LINES`` failures), for the RunnerError."""

    failed: list[int] = field(default_factory=list)
    first_error: str | None = None
    errors: dict[int, str] = field(default_factory=dict)

    def details(self) -> str:
        """One line per failed block (bounded), as distributed runs report per task."""
        lines = [f"block {i}: {text}" for i, text in sorted(self.errors.items())]
        hidden = len(self.failed) - len(lines)
        if hidden > 0:
            lines.append(f"... and {hidden} more failed block(s)")
        return "\n".join(lines)


def last_line(error: BaseException) -> str:
    remote = getattr(error, "remote_traceback", None)
    text = (remote or f"{type(error).__name__}: {error}").strip()
    return text.splitlines()[-1] if text else type(error).__name__


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
    retries: int = 0,
    block_timeout: float | None = None,
    still_running: Callable[[int], bool] | None = None,
) -> PipelineOutcome:
    """Run ``process(block_id)`` over every block of ``work`` with at most ``in_flight`` at once.

    Each work item is a list of block ids processed in order by one worker coroutine (blocks
    that share an output shard must not be written concurrently). ``on_done(block_id)`` is
    called only after a block's write returned, so a journal fed by it never records a torn
    block. ``still_running(block_id)`` says whether a timed-out block's compute goes on (a
    thread cannot be stopped): such a block is not retried, since each retry would hold one
    more thread of a small pool until healthy blocks time out waiting for one.
    """
    stats = stats if stats is not None else RunStats(name=name)
    stats.blocks_total = total
    outcome = PipelineOutcome()
    bar = Progress(progress, total, name)
    items: Iterator[Sequence[int]] = iter(work)
    active = 0
    started = time.perf_counter()

    async def contained(block_id: int) -> bool:
        try:
            return await process(block_id)
        except (Exception, asyncio.CancelledError, KeyboardInterrupt):
            raise
        except BaseException as error:  # SystemExit & co. raised by the block's function
            raise _as_block_exit(block_id, error) from error

    async def once(block_id: int) -> bool:
        if block_timeout is None:
            return await contained(block_id)
        try:
            async with deadline(block_timeout):  # waits on other blocks are not charged
                return await contained(block_id)
        except TimeoutError:
            raise BlockTimeoutError(
                f"block {block_id} took longer than block_timeout={block_timeout:g} s and was "
                "stopped"
            ) from None

    async def attempt(block_id: int) -> bool:
        for tries_left in range(retries, -1, -1):
            try:
                try:
                    return await once(block_id)
                except asyncio.CancelledError as cancelled:
                    if _run_is_cancelled():
                        raise
                    raise _as_block_error(block_id, cancelled) from cancelled
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not tries_left:
                    raise
                if _still_computing(block_id, error, still_running):
                    raise BlockTimeoutError(
                        f"block {block_id} took longer than block_timeout={block_timeout:g} s; "
                        "its compute thread cannot be stopped and still runs, so the block is "
                        "not retried (a retry would hold one more thread, which the other "
                        "blocks need)"
                    ) from error
                stats.extra["retries"] = stats.extra.get("retries", 0.0) + 1
        raise AssertionError("unreachable")

    async def worker() -> None:
        nonlocal active
        for group in items:  # shared iterator: next() has no await, so each item goes once
            for block_id in group:
                active += 1
                stats.max_in_flight = max(stats.max_in_flight, active)
                try:
                    written = await attempt(block_id)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - one block's failure must not stop the others
                    outcome.failed.append(block_id)
                    stats.blocks_failed += 1
                    if outcome.first_error is None:
                        outcome.first_error = describe_error(block_id, error)
                    if len(outcome.errors) < ERROR_LINES:
                        outcome.errors[block_id] = last_line(error)
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
