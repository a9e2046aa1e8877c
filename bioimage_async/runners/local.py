"""The local backend: the streaming pipeline in this process, compute in a process pool.

A local run whose sources can be reopened keeps a journal in a run folder under ``tmp_root``
(the same layout as distributed runs: manifest, payload, ``progress/*.log``): one 13-byte append
per finished block, made only after the block's write returned, with no fsync (a killed process
loses nothing the kernel already has). A run killed by SIGKILL, an OOM kill or a sleeping laptop
is finished with ``resume_from=<folder>``: only the blocks without a record run. The folder is
locked while this process drives it and removed after success; a failure or a cancellation
keeps it and says where. Runs over in-memory arrays keep no journal (nothing to resume into).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..blocking.safety import WritePlan, plan_writes
from ..context import resource_options
from ..errors import ConfigError, InvalidArgumentError, RunLockedError, RunnerError
from ..pipeline.buffers import input_buffers
from ..pipeline.chunk_guard import ChunkGuard
from ..pipeline.compute_pool import ComputePool
from ..pipeline.engine import run_blocks
from ..pipeline.execute import Compute, execute_block, threaded_compute
from ..pipeline.read_cache import shared_read_cache_bytes
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .base import Runner
from .config import RunnerConfig
from .files import LocalFiles
from .options import ExecOptions
from .protocol import RunFolder, id_ranges, progress_line
from .registry import RunnerBackend, load_runner_backends, runner_backend
from .run import Run

logger = logging.getLogger("bioimage_async")


def default_in_flight(cost: str, num_workers: int) -> int:
    """Enough blocks in flight to overlap I/O with compute, no more."""
    if cost == "none":
        return min(16, max(8, 4 * num_workers))
    if cost == "light":
        return 2 * num_workers + 2
    return 2 * num_workers + 1


def journaled(task: BlockTask) -> bool:
    """Whether the run can keep a journal: every source reopens from its spec."""
    return all(source.reopenable for source in task.sources().values())


#: One thread appends every local run's journal lines: never the event loop, and never queued
#: behind block reads in the shared blocking pool.
_JOURNAL_WRITER = ThreadPoolExecutor(1, thread_name_prefix="bioimage-journal")


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all of ``data`` is written (a short write, e.g. on a filling disk, would
    otherwise leave a torn record that the next append continues)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _missing_ids_text(ids: Sequence[int] | None, finished: set[int] | None, total: int) -> str:
    """How to finish a cancelled run that keeps no journal: the exact ids, as ranges."""
    if finished is None:
        return ""
    if ids is not None:
        text = id_ranges(i for i in ids if int(i) not in finished)
    else:  # the whole grid (maybe 10**12 blocks): the gaps between the finished ones
        gaps, start = [], 0
        for block_id in sorted(finished) + [total]:
            if block_id > start:
                gaps.append(str(start) if block_id == start + 1 else f"{start}-{block_id - 1}")
            start = block_id + 1
        text = ", ".join(gaps)
    return (
        "The run keeps no journal (a source lives in memory): re-run with block_ids= the "
        f"missing ids, {text}."
    )


async def refuse_live_tasks(folder: RunFolder, config: RunnerConfig) -> None:
    """Refuse to finish here a run whose distributed tasks still run (its attempts name
    them): this process would compute their blocks a second time next to them, and they would
    then report those blocks failed. Every backend that made an attempt is asked (a local run
    resumed with job_type='subprocess', wait=False has live workers under a 'local'
    manifest), as ``resume_from`` asks its own backend (``Run.alive``)."""
    manifest = folder.manifest
    job_types = [str(manifest.data.get("job_type"))]
    job_types += [str(a.get("job_type")) for a in manifest.attempts]
    await load_runner_backends()
    for job_type in dict.fromkeys(job_types):
        await _refuse_live_tasks_of(folder, config, job_type)


async def _refuse_live_tasks_of(folder: RunFolder, config: RunnerConfig, job_type: str) -> None:
    try:
        backend = runner_backend(job_type)
    except InvalidArgumentError:
        raise ConfigError(
            f"resume_from={folder.path!r} was written by the {job_type!r} backend, which is not "
            "registered in this process: register it (ba.register_runner) so that the resume "
            "can check whether its tasks still run"
        ) from None
    if not backend.distributed:
        return  # a local run's only worker is its driver, which holds the folder's lock
    try:
        run = await _live_run(folder, backend, config)
    except Exception as error:
        error.add_note(
            f"(while checking whether the {job_type} tasks of resume_from={folder.path!r} still "
            "run; if they are gone, run the rest as a new run: block_ids="
            f"ba.sync.missing_blocks({folder.path!r}))"
        )
        raise
    if run is not None:
        raise RunLockedError(
            f"resume_from={folder.path!r} is a {job_type} run whose tasks still run (jobs "
            f"{run.job_ids}); a local resume would compute their blocks a second time. Wait "
            f"for it: await (await ba.attach({folder.path!r})).wait(); or stop it first: await "
            f"(await ba.attach({folder.path!r})).cancel(), then resume; or resume it with "
            f"job_type={job_type!r}, which attaches to the live run."
        )


async def _live_run(folder: RunFolder, backend: RunnerBackend, config: RunnerConfig) -> Run | None:
    """The run of ``folder`` if any of its tasks is still pending or running, else None."""
    backend_config = backend.config(config if isinstance(config, backend.config_type) else None)
    _, launcher = await backend.connect(backend_config)
    try:
        run = Run(folder, launcher, backend_config, backend)
        return run if await run.alive() else None
    finally:
        await launcher.close()


class Journal:
    """The run folder of a local run and its append-only progress log."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.lease = folder.lease()
        self._fd: int | None = None
        self._pending: list[bytes] = []
        self._flushing: asyncio.Task[None] | None = None
        self._broken = False

    @classmethod
    async def start(
        cls, task: BlockTask, tmp_root: str, ids: Sequence[int] | None
    ) -> tuple[Journal, Sequence[int] | None]:
        folder = await RunFolder.create(LocalFiles(), tmp_root, task, ids, "local")
        journal = cls(folder)
        await journal.open()
        logger.info("run %r journals finished blocks in %s", task.name, folder.path)
        return journal, ids

    @classmethod
    async def resume(
        cls, task: BlockTask, path: str, config: RunnerConfig
    ) -> tuple[Journal, list[int]]:
        if not journaled(task):
            in_memory = [role for role, s in task.sources().items() if not s.reopenable]
            raise InvalidArgumentError(
                "resume_from finishes a run into sources that reopen from their specs; this "
                f"call's {' and '.join(in_memory)} lives in memory (a numpy array). Pass the "
                "same file-backed sources as the run that failed"
            )
        folder = await RunFolder.open(LocalFiles(), path)
        await folder.check_payload(task)
        journal = cls(folder)
        await journal.open(before=lambda: refuse_live_tasks(folder, config))
        try:
            missing = await folder.missing_blocks()
            await folder.clear_cancel()  # running again: no longer a cancelled run
        except BaseException:  # else the folder stays locked by this live process
            await asyncio.shield(journal.close(success=False))
            raise
        logger.info(
            "resuming %r from %s: %d block(s) missing", task.name, folder.path, len(missing)
        )
        return journal, missing

    async def open(self, *, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Lock the folder, then start this attempt's log. ``before`` runs under the lock,
        ahead of any record: a resume refuses there a run whose workers still compute."""
        await self.lease.acquire()
        try:
            if before is not None:
                await before()
            attempt = len(self.folder.manifest.attempts)
            log = self.folder.join("progress", f"local-{attempt}.log")
            self._fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            await self.folder.record_attempt("local", [], {"pid": os.getpid()})
        except BaseException:  # a half-open journal must not keep the folder locked
            await asyncio.shield(self.close(success=False))
            raise

    def mark(self, block_id: int) -> None:
        """Record a finished block (called after its write returned): appended off the event
        loop by a thread of the journal's own, batched with the marks that came meanwhile; no
        fsync. A crash loses at most the marks of one append, whose blocks a resume redoes."""
        if self._broken:
            return
        self._pending.append(progress_line(block_id))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending and self._fd is not None:
            lines, self._pending = b"".join(self._pending), []
            try:
                await loop.run_in_executor(_JOURNAL_WRITER, _write_all, self._fd, lines)
            except OSError as error:  # the run goes on; a resume would redo these blocks
                self._broken = True
                logger.warning(
                    "cannot append to the journal in %s (%s): a resume would redo blocks "
                    "finished from now on",
                    self.folder.path,
                    error,
                )
                return

    async def close(self, *, success: bool) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)  # every mark made so far is on disk
            await self._flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        await self.lease.release()
        if success:
            await self.folder.remove()


class LocalRunner(Runner):
    """Runs every block in this process's event loop (CPU work in a spawn/forkserver pool)."""

    async def run(self, task: BlockTask, options: ExecOptions, stats: RunStats) -> None:
        ids: Sequence[int] | None = (
            task.grid.check_ids(options.block_ids) if options.block_ids is not None else None
        )
        in_flight, plan = self._plan(task, options)  # refusals before any folder is made
        journal: Journal | None = None
        if options.resume_from is not None:
            journal, ids = await Journal.resume(task, options.resume_from, self.config)
        elif self.config.journal and journaled(task):
            journal, ids = await Journal.start(task, self.config.tmp_root_or_default(), ids)
        try:
            await self._run(task, options, stats, ids, journal, in_flight, plan)
        except BaseException:
            if journal is not None:
                await asyncio.shield(journal.close(success=False))
            raise
        if journal is not None:
            await journal.close(success=True)

    def _plan(self, task: BlockTask, options: ExecOptions) -> tuple[int, WritePlan]:
        """The in-flight bound and the write plan (which refuses unsafe block shapes).

        With ``block_timeout``, no more blocks are in flight than there are compute slots
        (processes, or threads), so the timeout never counts time spent waiting for a slot.
        """
        cost = task.kernel.compute_cost
        num_workers = options.num_workers
        in_flight = self.config.in_flight or default_in_flight(cost, num_workers)
        if options.block_timeout is not None and cost != "none":
            slots = num_workers if cost == "heavy" else resource_options().blocking_threads
            in_flight = min(in_flight, slots)
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
            task.output.grid_offset,
            concurrent=in_flight > 1 and not task.output.serializes_writes,
            output_name=task.output.describe(),
            one_writer=True,
        )
        return in_flight, plan

    async def _with_shared_read_cache(
        self, task: BlockTask, in_flight: int, stats: RunStats
    ) -> BlockTask:
        """The task reading its input through a cache that holds the chunks neighbouring
        blocks share (see ``pipeline.read_cache``), within half the memory budget. Not when the
        input is also the output: its cache would not see this run's writes."""
        if task.input is task.output:
            return task
        nbytes = shared_read_cache_bytes(task, in_flight, self.config.memory_budget // 2)
        if nbytes <= resource_options().cache_bytes:
            return task
        cached = await task.input.with_read_cache(nbytes)
        if cached is task.input:
            return task
        stats.extra["read_cache_bytes"] = nbytes
        return dataclasses.replace(task, input=cached)

    async def _run(
        self,
        task: BlockTask,
        options: ExecOptions,
        stats: RunStats,
        ids: Sequence[int] | None,
        journal: Journal | None,
        in_flight: int,
        plan: WritePlan,
    ) -> None:
        total = len(ids) if ids is not None else task.grid.num_blocks
        task = await self._with_shared_read_cache(task, in_flight, stats)
        cost = task.kernel.compute_cost
        num_workers = options.num_workers
        pool = (
            ComputePool(task.kernel, task.grid, task.output.dtype, num_workers, task.casting)
            if cost == "heavy"
            else None
        )
        compute: Compute | None = (
            pool.compute
            if pool is not None
            else (threaded_compute(task) if cost == "light" else None)
        )
        # input regions of the library's kernels, reused from block to block
        buffers = input_buffers(task, in_flight, self.config.memory_budget // 4)
        guard = ChunkGuard(task.grid.shape, *plan.guarded) if plan.guarded is not None else None
        done = 0
        # without a journal, only this run can say which blocks a re-run needs
        finished: set[int] | None = set() if journal is None else None

        def mark(block_id: int) -> None:
            nonlocal done
            done += 1
            if journal is not None:
                journal.mark(block_id)
            elif finished is not None:
                finished.add(block_id)

        try:
            if pool is not None and total:
                await pool.start()  # not inside the first blocks' block_timeout
            outcome = await run_blocks(
                plan.groups(ids),
                lambda block_id: execute_block(task, block_id, compute, stats, buffers, guard),
                total=total,
                in_flight=in_flight,
                progress=options.progress,
                stats=stats,
                name=task.name,
                on_done=mark,
                retries=options.retries,
                block_timeout=options.block_timeout,
            )
        except BaseException as error:
            if pool is not None:
                await asyncio.shield(pool.aclose(kill=True))
            if isinstance(error, asyncio.CancelledError):
                if journal is not None:  # status then says cancelled, not stopped or killed
                    with contextlib.suppress(OSError):
                        await asyncio.shield(journal.folder.record_cancel())
                where = (
                    f"Finish it with resume_from={journal.folder.path!r}; "
                    f"ba.sync.missing_blocks({journal.folder.path!r}) lists them."
                    if journal is not None
                    else _missing_ids_text(ids, finished, task.grid.num_blocks)
                )
                logger.warning(
                    "run %r cancelled: %d of %d blocks missing; finished blocks are written. %s",
                    task.name,
                    total - done,
                    total,
                    where,
                )
            raise
        if pool is not None:
            await pool.aclose(kill=False)
        if guard is not None:  # writes that waited for a neighbour's on a shared chunk
            stats.extra["shared_chunk_waits"] = float(guard.waits)
        if outcome.failed:
            raise RunnerError.for_blocks(
                task.name,
                outcome.failed,
                outcome.first_error,
                tmp_folder=journal.folder.path if journal is not None else None,
                details=outcome.details(),
            )


class LocalBackend(RunnerBackend):
    """``job_type='local'``: the pipeline in this process, heavy compute in a process pool."""

    name = "local"
    description = "this process (compute in a local process pool)"
    distributed = False
    detachable = False

    def runner(self, config: RunnerConfig) -> Runner:
        return LocalRunner(config)

    async def read_manifest(self, config: RunnerConfig, path: str) -> dict[str, object]:
        return (await RunFolder.open(LocalFiles(), path)).manifest.data


RUNNER_BACKEND = LocalBackend()
