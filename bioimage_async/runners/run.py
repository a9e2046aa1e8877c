"""A distributed run after submission: watch it, wait for it, cancel it, or attach to it later.

``Run.wait()`` polls without blocking the event loop: one listing of the sentinels and of the
progress folder, plus one scheduler query, per poll. A task the scheduler reports dead
(FAILED, TIMEOUT, CANCELLED, ...) without a sentinel is declared dead after two observations; a
COMPLETED task whose sentinel is not visible yet (NFS attribute caches) is waited for up to
``latency_wait`` seconds. Whatever happens, the missing blocks are read from the progress logs,
so the RunnerError names exactly the blocks that have no done record.

A run left running holds its output's lease (see ``lease``); a wait that sees every task end, and
a cancel that saw them go, remove that hold, so the next run into the output starts at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunnerError, RunTimeoutError
from ..pipeline.progress import Progress, ProgressArg
from ..pipeline.stats import RunStats
from ..sources.base import Source
from .config import RunnerConfig
from .files import LocalFiles
from .launcher import TERMINAL_FAILURES, Launcher, TaskState
from .lease import Lease
from .protocol import RunFolder
from .registry import RunnerBackend

logger = logging.getLogger("bioimage_async")

#: Sentinels read for RunStats at the end of a run (one small read each).
STATS_TASKS = 512


@dataclass
class RunStatus:
    """A snapshot of a run: blocks done / failed / pending and the tasks' scheduler states."""

    tmp_folder: str
    job_ids: list[str]
    blocks_total: int
    blocks_done: int
    tasks_total: int
    tasks_succeeded: int
    tasks_failed: int
    task_states: dict[int, str] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return sum(1 for s in self.task_states.values() if s == "RUNNING")

    @property
    def pending(self) -> int:
        return sum(1 for s in self.task_states.values() if s == "PENDING")

    @property
    def finished(self) -> bool:
        return self.tasks_succeeded + self.tasks_failed >= self.tasks_total or (
            not any(s in ("RUNNING", "PENDING") for s in self.task_states.values())
            and self.tasks_succeeded + self.tasks_failed > 0
        )


class Run:
    """A submitted distributed run (``wait=False`` returns one; ``ba.attach`` rebuilds one)."""

    def __init__(
        self,
        folder: RunFolder,
        launcher: Launcher,
        config: RunnerConfig,
        backend: RunnerBackend,
        *,
        result: Any = None,
        detach_on_cancel: bool = False,
        stats: RunStats | None = None,
    ) -> None:
        self.folder = folder
        self.launcher = launcher
        self.config = config
        self.backend = backend
        self.result = result
        self.detach_on_cancel = detach_on_cancel
        self.stats = stats

    @property
    def tmp_folder(self) -> str:
        return self.folder.path

    @property
    def name(self) -> str:
        return self.folder.manifest.name

    @property
    def job_ids(self) -> list[str]:
        return [str(j) for a in self.folder.manifest.attempts for j in a.get("job_ids", [])]

    def task_ids(self) -> list[int]:
        ids: list[int] = []
        for attempt in self.folder.manifest.attempts:
            start, stop = attempt["task_ids"]
            ids.extend(range(start, stop))
        return ids

    def _latest_task_ids(self) -> list[int]:
        attempts = self.folder.manifest.attempts
        if not attempts:
            return []
        start, stop = attempts[-1]["task_ids"]
        return list(range(start, stop))

    def __repr__(self) -> str:
        return f"<Run {self.name!r} jobs={self.job_ids} tmp_folder={self.tmp_folder!r}>"

    def output_lease_path(self) -> str | None:
        """Where the output's lease lives (a local file), when the output is known here."""
        return self.result.writer_lock_path() if isinstance(self.result, Source) else None

    async def _end_output_hold(self) -> None:
        """Every task ended: remove the output's lease if this run still holds it (a run left
        running, ``wait=False``); a driver's own lease is its driver's to release."""
        path = self.output_lease_path()
        if path is None:
            return
        try:
            await Lease(LocalFiles(), path).end_run(self.tmp_folder)
        except OSError as error:  # it goes stale once no worker touches it
            logger.warning("could not unlock the output of %s: %s", self.tmp_folder, error)

    def attach_hint(self) -> str:
        return (
            f"the run goes on; pick it up again with: await ba.attach({self.tmp_folder!r}) "
            f"(or: bioimage-async attach {self.tmp_folder})"
        )

    # ---- observing ------------------------------------------------------------------------
    async def status(self) -> RunStatus:
        succeeded, failed = await self.folder.sentinels()
        states = await self.launcher.states(self.folder)
        task_states = {}
        for task_id in self.task_ids():
            if task_id in succeeded:
                task_states[task_id] = "SUCCEEDED"
            elif task_id in failed:
                task_states[task_id] = "FAILED"
            else:
                state = states.get(task_id)
                task_states[task_id] = state.state if state else "UNKNOWN"
        return RunStatus(
            tmp_folder=self.tmp_folder,
            job_ids=self.job_ids,
            blocks_total=self.folder.manifest.requested_count(),
            blocks_done=await self.folder.blocks_done_count(),
            tasks_total=len(self.task_ids()),
            tasks_succeeded=len(succeeded & set(self.task_ids())),
            tasks_failed=len(failed & set(self.task_ids())),
            task_states=task_states,
        )

    async def alive(self) -> bool:
        """Whether any task of the run is still pending or running in the scheduler."""
        succeeded, failed = await self.folder.sentinels()
        states = await self.launcher.states(self.folder)
        return any(
            states.get(t, TaskState("GONE")).alive
            for t in self.task_ids()
            if t not in succeeded and t not in failed
        )

    # ---- waiting --------------------------------------------------------------------------
    async def wait(self, progress: ProgressArg = None) -> Any:
        """Wait until every task ended; return the op's result or raise RunnerError."""
        from ..errors import SshError

        try:
            dead = await self._watch(progress)
        except SshError as error:
            raise SshError(f"{error}. {self.attach_hint()}") from error
        except asyncio.CancelledError:
            if self.detach_on_cancel:
                logger.warning("cancelled waiting for %r: %s", self.name, self.attach_hint())
            else:
                await asyncio.shield(self._cancel_quietly())
                logger.warning(
                    "run %r cancelled: its jobs were stopped; finished blocks are written. "
                    "Finish it with resume_from=%r; ba.sync.missing_blocks(%r) lists the "
                    "missing blocks.",
                    self.name,
                    self.tmp_folder,
                    self.tmp_folder,
                )
            raise
        await asyncio.shield(self._end_output_hold())
        await self._finish(dead)
        return self.result

    async def _cancel_quietly(self) -> None:
        """Stop the jobs of a cancelled wait (Ctrl-C, a task cancel), recording the cancel so
        that ``status`` does not report the stopped workers as killed."""
        try:
            await self.folder.record_cancel()
        except Exception as error:  # noqa: BLE001 - the cancel matters more than its record
            logger.warning("could not record the cancel in %s: %s", self.folder.path, error)
        try:
            await self.launcher.cancel(self.folder)
        except Exception as error:  # noqa: BLE001 - cancellation is best effort, then re-raise
            logger.warning("could not cancel %s: %s", self.job_ids, error)

    async def _watch(self, progress: ProgressArg) -> dict[int, str]:
        total = self.folder.manifest.requested_count()
        bar = Progress(progress, total, self.name)
        already = 0
        dead: dict[int, str] = {}
        strikes: dict[int, int] = {}
        completed_since: dict[int, float] = {}
        latency_wait = self.backend.latency_wait(self.config)
        scheduler_interval = self.backend.scheduler_poll_interval(self.config)
        last_query = -float("inf")
        try:
            while True:
                succeeded, failed = await self.folder.sentinels()
                done_count = await self.folder.blocks_done_count()
                if done_count > already:
                    bar.advance(min(done_count, total) - already)
                    already = min(done_count, total)
                open_tasks = [
                    t
                    for t in self.task_ids()
                    if t not in succeeded and t not in failed and t not in dead
                ]
                if not open_tasks:
                    return dead
                now = time.monotonic()
                if now - last_query < scheduler_interval:
                    await asyncio.sleep(self.config.poll_interval)
                    continue
                last_query = now
                states = await self.launcher.states(self.folder)
                for task_id in open_tasks:
                    state = states.get(
                        task_id,
                        TaskState(
                            "GONE",
                            reason="no longer known to the scheduler (cancelled before it "
                            "started, or its record was purged)",
                        ),
                    )
                    if state.state in TERMINAL_FAILURES:
                        strikes[task_id] = strikes.get(task_id, 0) + 1
                        if strikes[task_id] >= 2:
                            dead[task_id] = await self._reason(task_id, state)
                    elif state.state == "COMPLETED":
                        since = completed_since.setdefault(task_id, now)
                        if now - since > latency_wait:
                            dead[task_id] = await self._reason(
                                task_id,
                                state,
                                f"COMPLETED but no sentinel after latency_wait={latency_wait}s",
                            )
                    else:
                        strikes.pop(task_id, None)
                await asyncio.sleep(self.config.poll_interval)
        finally:
            bar.close()

    async def _reason(self, task_id: int, state: TaskState, note: str | None = None) -> str:
        text = f"task {task_id}: {note or state.describe()}"
        tail = await self.folder.log_tail(state.log) if state.log else ""
        if not tail:  # no word from the task: a full disk leaves neither a log nor a sentinel
            free = await self.folder.files.free_bytes(self.folder.path)
            if free is not None and free < 16 * 2**20:
                text += (
                    f" and left no error text; the disk of the run folder {self.folder.path} "
                    f"has only {free / 2**20:.1f} MiB free: free space or set tmp_root= to "
                    "another folder, then resume"
                )
        if state.log:
            if tail:
                text += (
                    "\n    last lines of logs/"
                    + state.log
                    + ":\n    "
                    + tail.replace("\n", "\n    ")
                )
        return text

    async def _collect_stats(self) -> None:
        """Fill ``stats`` with what the attempt waited for did (a resume's blocks, not the whole
        run's): its blocks, done, skipped, and the seconds per phase from its tasks'
        sentinels. ``blocks_failed`` is set by ``_finish`` (blocks of dead tasks have no
        sentinel to say so)."""
        if self.stats is None:
            return
        stats = self.stats
        latest = self._latest_task_ids()
        sizes = await self.folder.files.list_sizes(self.folder.join("progress"))
        width = self.folder.manifest.record_width
        ours = {f"{task_id}.log" for task_id in latest}
        done_here = sum(size // width for name, size in sizes.items() if name in ours)
        done_before = sum(
            size // width
            for name, size in sizes.items()
            if name.endswith(".log") and name not in ours
        )
        requested = self.folder.manifest.requested_count()
        stats.blocks_total = max(0, requested - done_before)
        summaries = await asyncio.gather(*(self.folder.summary(t) for t in latest[:STATS_TASKS]))
        skipped = retries = 0
        for summary in summaries:
            if summary:
                stats.read_s += float(summary.get("read_s", 0.0))
                stats.compute_s += float(summary.get("compute_s", 0.0))
                stats.write_s += float(summary.get("write_s", 0.0))
                skipped += int(summary.get("skipped", 0))
                retries += int(summary.get("retries", 0))
        if retries:
            stats.extra["retries"] = stats.extra.get("retries", 0.0) + retries
        stats.blocks_skipped += skipped
        # the done logs hold the blocks an empty mask skipped too (a resume must not redo them)
        stats.blocks_done = min(max(0, done_here - skipped), stats.blocks_total)

    async def _finish(self, dead: dict[int, str]) -> None:
        await self._collect_stats()
        succeeded, _ = await self.folder.sentinels()
        # a worker writes .success only after recording every block: no need to read the logs
        complete = not dead and set(self.task_ids()) <= succeeded
        missing = [] if complete else await self.folder.missing_blocks()
        if self.stats is not None:
            self.stats.blocks_failed = len(missing)
        if not missing:
            if not self.config.keep_tmp:
                await self.folder.remove()
            return
        _, failed = await self.folder.sentinels()
        first_error = None
        details = []
        latest = set(self._latest_task_ids())
        for task_id in sorted(failed & set(self.task_ids()), reverse=True):  # newest attempt first
            info = await self.folder.failure(task_id) or {}
            error = str(info.get("error") or "")
            if first_error is None and error and task_id in latest:
                first_error = error
            last_line = error.strip().splitlines()[-1] if error.strip() else "no error text"
            blocks = info.get("failed")
            what = f"blocks {str(blocks)[:120]} failed" if blocks else "failed before any block"
            details.append(f"task {task_id}: {what}: {last_line}")
        details.reverse()
        cancelled = await self.folder.cancelled_at()
        if cancelled is not None and dead:  # its workers ended because someone cancelled it
            gone = ", ".join(str(t) for t in sorted(dead))
            details.append(f"the run was cancelled at {cancelled}: tasks {gone} were stopped")
            first_error = first_error or f"the run was cancelled at {cancelled}"
        else:
            details.extend(dead[t] for t in sorted(dead))
        if first_error is None and dead:
            first_error = dead[min(dead)]
        raise RunnerError.for_blocks(
            self.name,
            missing,
            first_error,
            tmp_folder=self.tmp_folder,
            details="\n".join(details),
        )

    # ---- cancelling -----------------------------------------------------------------------
    async def cancel(self, timeout: float = 60.0) -> None:
        """Cancel every pending/running task, then wait until the scheduler reports them gone.

        The run folder records the cancel, so ``status`` later says the run was cancelled
        rather than that its workers died."""
        try:
            await self.folder.record_cancel()
        except Exception as error:  # noqa: BLE001 - the cancel matters more than its record
            logger.warning("could not record the cancel in %s: %s", self.folder.path, error)
        await self.launcher.cancel(self.folder)
        deadline = time.monotonic() + timeout
        while await self.alive():
            if time.monotonic() > deadline:
                raise RunTimeoutError(
                    f"tasks of {self.job_ids} still alive {timeout}s after cancel"
                )
            await asyncio.sleep(self.config.poll_interval)
        await self._end_output_hold()

    async def close(self) -> None:
        await self.launcher.close()
