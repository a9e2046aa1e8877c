"""A toy runner backend used only by the tests: every block in order, in this process.

It shows what a new backend costs: this one module, and one registration line
(``ba.register_runner(SequentialBackend())``); ``job_type="sequential"``, the CLI's
``--job-type`` choices and the option checks pick it up from the registry.
"""

from __future__ import annotations

from bioimage_async import RunnerBackend, RunnerConfig
from bioimage_async.errors import RunnerError
from bioimage_async.pipeline.engine import describe_error
from bioimage_async.pipeline.execute import execute_block
from bioimage_async.pipeline.stats import RunStats
from bioimage_async.pipeline.task import BlockTask
from bioimage_async.runners.base import Runner
from bioimage_async.runners.options import ExecOptions


class SequentialRunner(Runner):
    async def run(self, task: BlockTask, options: ExecOptions, stats: RunStats) -> None:
        ids = (
            task.grid.check_ids(options.block_ids)
            if options.block_ids is not None
            else range(task.grid.num_blocks)
        )
        failed, first_error = [], None
        for block_id in ids:
            try:
                await execute_block(task, block_id, None, stats)
                stats.blocks_done += 1
            except Exception as error:  # noqa: BLE001 - collected like every runner does
                failed.append(block_id)
                first_error = first_error or describe_error(block_id, error)
        if failed:
            raise RunnerError.for_blocks(task.name, failed, first_error)


class SequentialBackend(RunnerBackend):
    name = "sequential"
    description = "every block in order, in this process (tests only)"
    distributed = False
    detachable = False
    resumable = False

    def runner(self, config: RunnerConfig) -> Runner:
        return SequentialRunner(config)
