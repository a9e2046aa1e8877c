"""The orchestrator shared by the subprocess and slurm backends.

submit: validate the write plan (distributed writers are separate processes, so blocks must
never share a chunk), write the run folder, cut the work into tasks, hand them to the launcher.
Then either return the ``Run`` handle (``wait=False``) or wait on it. ``resume_from`` reopens
a run folder, attaches to a run whose tasks are still alive instead of resubmitting, and
otherwise submits only the blocks without a done record, with the original payload.
"""

from __future__ import annotations

import logging
import math
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..blocking.safety import plan_writes
from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .base import Runner
from .files import RunFiles
from .launcher import Launcher
from .protocol import RunFolder, split_into_tasks
from .run import Run

logger = logging.getLogger("bioimage_async")


class DistributedRunner(Runner):
    """Runs a BlockTask as worker processes that talk through a run folder."""

    job_type = ""
    detach_on_cancel = False

    @abstractmethod
    async def connect(self) -> tuple[RunFiles, Launcher]:
        """Where the run folder lives and how tasks start (local, or over one SSH connection)."""

    def tmp_root(self) -> str:
        return self.config.tmp_root or tempfile.gettempdir()

    #: default tasks per worker: subprocess slots relaunch in milliseconds, so several tasks per
    #: worker balance the load; a slurm array element costs ~1.5 s of scheduling, so one each.
    tasks_per_worker = 4

    def num_tasks(self, n_groups: int, num_workers: int) -> int:
        per_task = self.config.blocks_per_task
        if per_task:
            return max(1, math.ceil(n_groups / per_task))
        return min(n_groups, self.tasks_per_worker * num_workers)

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
    ) -> Any:
        plan = plan_writes(
            task.grid,
            task.output.chunks,
            task.output.shards,
            getattr(task.output, "grid_offset", None),
            concurrent=True,
            output_name=task.output.describe(),
        )
        ids = task.grid.check_ids(block_ids) if block_ids is not None else None
        files, launcher = await self.connect()
        try:
            if resume_from is not None:
                folder = await RunFolder.open(files, resume_from)
                await folder.check_payload(task)
                previous = Run(folder, launcher, self.config, result=task.output)
                if await previous.alive():
                    logger.warning(
                        "resume_from=%s: the run's job %s is still alive; attaching to it "
                        "instead of resubmitting",
                        resume_from,
                        previous.job_ids,
                    )
                    return await previous.wait(progress) if wait else previous
                missing = await folder.missing_blocks()
                groups = list(plan.groups(missing)) if missing else []
            else:
                folder = await RunFolder.create(files, self.tmp_root(), task, ids, self.job_type)
                groups = list(plan.groups(ids))
            run = Run(
                folder,
                launcher,
                self.config,
                result=task.output,
                detach_on_cancel=self.detach_on_cancel,
            )
            if groups:
                tasks = split_into_tasks(
                    groups, len(groups), self.num_tasks(len(groups), num_workers)
                )
                task_ids = await folder.add_tasks(tasks)
                jobs = await launcher.submit(folder, task_ids, num_workers)
                await folder.record_attempt(self.job_type, task_ids, jobs)
                stats.extra["tasks"] = float(len(task_ids))
            stats.blocks_total = int(np.asarray(folder.manifest.requested_ids()).size)
            if not wait:
                return run
            return await run.wait(progress)
        finally:
            if wait:
                await launcher.close()
