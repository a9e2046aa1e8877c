"""The orchestrator shared by the subprocess and slurm backends.

submit: validate the write plan (distributed writers are separate processes, so blocks must
never share a chunk), write the run folder, cut the work into tasks, hand them to the launcher.
Then either return the ``Run`` handle (``wait=False``) or wait on it. ``resume_from`` reopens
a run folder, attaches to a run whose tasks are still alive instead of resubmitting, and
otherwise submits only the blocks without a done record, with the original payload.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from ..blocking.safety import WritePlan, plan_writes
from ..context import run_blocking
from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .base import Runner
from .config import RunnerConfig
from .files import RunFiles
from .launcher import Launcher
from .options import ExecOptions
from .protocol import Manifest, RunFolder, split_into_tasks
from .registry import RunnerBackend
from .run import Run

logger = logging.getLogger("bioimage_async")


class DistributedRunner(Runner):
    """Runs a BlockTask as worker processes that talk through a run folder; the backend
    (subprocess, slurm, ...) says where the folder lives and how tasks start.

    ``detached`` is the run the last ``run`` left going without waiting for it (``wait=False``,
    or a wait cancelled with ``detach_on_cancel``): its caller hands it the output's lease."""

    def __init__(self, config: RunnerConfig, backend: RunnerBackend) -> None:
        super().__init__(config)
        self.backend = backend
        self.detached: Run | None = None

    async def connect(self) -> tuple[RunFiles, Launcher]:
        """Where the run folder lives and how tasks start (local, or over one SSH connection)."""
        return await self.backend.connect(self.config)

    def num_tasks(self, n_groups: int, num_workers: int) -> int:
        per_task = self.config.blocks_per_task
        if per_task:
            return max(1, math.ceil(n_groups / per_task))
        return min(n_groups, self.backend.tasks_per_worker * num_workers)

    async def run(self, task: BlockTask, options: ExecOptions, stats: RunStats) -> Any:
        num_workers, progress, wait = options.num_workers, options.progress, options.wait
        resume_from, block_ids = options.resume_from, options.block_ids
        detach_on_cancel = options.detach_on_cancel or self.backend.detach_on_cancel
        job_type = self.backend.name
        plan = plan_writes(
            task.grid,
            task.output.chunks,
            task.output.shards,
            task.output.grid_offset,
            concurrent=True,
            output_name=task.output.describe(),
        )
        ids = task.grid.check_ids(block_ids) if block_ids is not None else None
        files, launcher = await self.connect()
        lease = None
        missing: Sequence[int] | None
        started = time.perf_counter()
        try:
            if resume_from is not None:
                folder = await RunFolder.open(files, resume_from)
                await folder.check_payload(task)
                lease = await folder.lease().acquire()
                previous = self._run(folder, launcher, task, detach_on_cancel, stats)
                if await previous.alive():
                    logger.warning(
                        "resume_from=%s: the run's job %s is still alive; attaching to it "
                        "instead of resubmitting",
                        resume_from,
                        previous.job_ids,
                    )
                    return await self._wait_or_detach(previous, wait, progress)
                missing = await folder.missing_blocks()
                await folder.clear_cancel()
            else:
                folder = await RunFolder.create(
                    files,
                    self.backend.tmp_root(self.config),
                    task,
                    ids,
                    job_type,
                    retries=options.retries,
                    block_timeout=options.block_timeout,
                )
                lease = await folder.lease().acquire()
                logger.info(
                    "run %r keeps its journal in %s (finish it with resume_from=%r if it stops)",
                    task.name,
                    folder.path,
                    folder.path,
                )
                missing = ids
            tasks = await run_blocking(self._plan_tasks, plan, missing, num_workers)
            run = self._run(folder, launcher, task, detach_on_cancel, stats)
            if tasks:
                await self._note_run_in_output_lease(folder.path)
                try:
                    task_ids = await folder.add_tasks(tasks)
                    jobs = await launcher.submit(folder, task_ids, num_workers)
                except BaseException:
                    if resume_from is None:  # nothing ran: leave no folder behind
                        await asyncio.shield(lease.release())
                        lease = None
                        await asyncio.shield(folder.remove())
                    raise
                await _record_or_stop(folder, launcher, job_type, task_ids, jobs)
                stats.extra["tasks"] = float(len(task_ids))
            if not tasks and not wait:
                return run  # nothing submitted: nothing goes on
            try:
                return await self._wait_or_detach(run, wait, progress)
            finally:
                if wait:
                    stats.wall_s = time.perf_counter() - started
        finally:
            if lease is not None:
                await asyncio.shield(lease.release())
            if wait:
                await launcher.close()

    async def _note_run_in_output_lease(self, folder: str) -> None:
        """Before any worker starts: the output stays locked while they run, even if this
        process is killed meanwhile (they outlive it in their own sessions or on the cluster)."""
        if self.output_lease is None:
            return
        try:
            await self.output_lease.note_run(folder)
        except OSError as error:
            logger.warning(
                "cannot record the run %s in the lock of its output (%s): if this process is "
                "killed, the output is unlocked while the run's workers still write",
                folder,
                error,
            )

    def _run(
        self,
        folder: RunFolder,
        launcher: Launcher,
        task: BlockTask,
        detach_on_cancel: bool,
        stats: RunStats | None = None,
    ) -> Run:
        return Run(
            folder,
            launcher,
            self.config,
            self.backend,
            result=task.output,
            detach_on_cancel=detach_on_cancel,
            stats=stats,
        )

    async def _wait_or_detach(self, run: Run, wait: bool, progress: ProgressArg) -> Any:
        """Wait for ``run``, or return it to run on (``wait=False``); ``detached`` records a run
        left going, also when the wait is cancelled with ``detach_on_cancel``.

        Cancellation: as ``Run.wait`` (its jobs are stopped unless ``detach_on_cancel``)."""
        if not wait:
            self.detached = run
            return run
        try:
            return await run.wait(progress)
        except asyncio.CancelledError:
            if run.detach_on_cancel:
                self.detached = run
            raise

    def _plan_tasks(
        self, plan: WritePlan, ids: Sequence[int] | None, num_workers: int
    ) -> list[list[list[int]]]:
        """The work cut into tasks (in a worker thread: a million blocks take a while)."""
        if ids is not None and not len(ids):
            return []
        groups = list(plan.groups(ids))
        return split_into_tasks(groups, len(groups), self.num_tasks(len(groups), num_workers))


async def _record_or_stop(
    folder: RunFolder,
    launcher: Launcher,
    job_type: str,
    task_ids: list[int],
    jobs: dict[str, Any],
) -> None:
    """Record the attempt that was just submitted; if that fails or the caller is cancelled
    meanwhile (one manifest write, a round trip over SFTP), stop its tasks first: nothing
    waits on them yet, so they would go on writing after the caller saw the error, and a
    resume would run their blocks again next to them.

    Cancellation: the stop is shielded (as in ``Run.wait``), then the error is re-raised.
    """
    try:
        await folder.record_attempt(job_type, task_ids, jobs)
    except BaseException:
        await asyncio.shield(_stop_submitted(folder, launcher, jobs))
        raise


async def _stop_submitted(folder: RunFolder, launcher: Launcher, jobs: dict[str, Any]) -> None:
    """Cancel the tasks of one submission, whether or not its attempt reached the manifest:
    ``launcher.cancel`` reads the tasks from the attempts, so it gets a view holding only this
    one (what ``submit`` returned is what ``record_attempt`` would have stored)."""
    manifest = Manifest({**folder.manifest.data, "attempts": [dict(jobs)]})
    view = RunFolder(folder.files, folder.path, manifest)
    try:
        await launcher.cancel(view)
    except Exception as error:  # noqa: BLE001 - best effort; the original error goes on
        logger.warning(
            "could not cancel the jobs %s just submitted: %s", jobs.get("job_ids"), error
        )
    else:
        logger.warning(
            "run %r interrupted before it was recorded: its jobs %s were stopped; finished "
            "blocks are written. Finish it with resume_from=%r.",
            folder.manifest.name,
            jobs.get("job_ids"),
            folder.path,
        )
