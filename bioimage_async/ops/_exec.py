"""The execution keywords every block-wise op takes, validated once, and the hand-off to a runner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from ..runners.base import JOB_TYPES, get_runner
from ..runners.config import RunnerConfig
from ..sources.base import Source
from ..sources.numpy_source import NumpySource


@dataclass(kw_only=True)
class ExecOptions:
    """job_type, job_config, num_workers, block_ids, resume_from, progress, stats, wait."""

    job_type: str = "local"
    job_config: RunnerConfig | None = None
    num_workers: int = 1
    block_ids: Sequence[int] | None = None
    resume_from: str | None = None
    progress: ProgressArg = None
    stats: RunStats | None = None
    wait: bool = True
    detach_on_cancel: bool = False

    def __post_init__(self) -> None:
        if self.job_type not in JOB_TYPES:
            raise ValueError(f"job_type must be one of {JOB_TYPES}, got {self.job_type!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer, got {self.num_workers!r}")
        if self.resume_from is not None and self.block_ids is not None:
            raise ValueError("Pass either 'resume_from' or 'block_ids', not both.")
        if self.resume_from is not None and self.job_type == "local":
            raise ValueError(
                "resume_from is only valid for distributed backends (job_type='subprocess' or "
                "'slurm'); re-run a local run with block_ids=error.failed_block_ids"
            )
        if not self.wait and self.job_type == "local":
            raise ValueError("wait=False needs a distributed job_type ('subprocess' or 'slurm')")

    @property
    def distributed(self) -> bool:
        return self.job_type != "local"


def exec_options(**kwargs: Any) -> ExecOptions:
    try:
        return ExecOptions(**kwargs)
    except TypeError as err:
        known = (
            "job_type, job_config, num_workers, block_ids, resume_from, progress, stats, wait, "
            "detach_on_cancel"
        )
        raise TypeError(f"{err}; the execution keywords are: {known}") from None


def allocate_output(
    output: Source | None, shape: tuple[int, ...], dtype: np.dtype, options: ExecOptions
) -> tuple[Source, np.ndarray | None]:
    """The output source, allocating a numpy array for local runs when none was given."""
    if output is not None:
        return output, None
    if options.distributed:
        raise ValueError(
            "'output' is required for distributed execution: create one with "
            "await ba.create_source(path, shape=..., dtype=..., chunks=...)"
        )
    array = np.zeros(shape, dtype=dtype)
    return NumpySource(array), array


def check_distributed(task: BlockTask, options: ExecOptions) -> None:
    """Distributed workers reopen every source from its spec: refuse what cannot be reopened."""
    if not options.distributed:
        return
    for role, source in task.sources().items():
        if not source.reopenable:
            raise ValueError(
                f"the {role} ({source.describe()}) lives in this process's memory and cannot be "
                f"reopened by {options.job_type} workers; write it to zarr/n5 first "
                "(ba.create_source + ba.copy) or use job_type='local'"
            )
    if not task.output.writable:
        raise ValueError(f"the output is not writable: {task.output.read_only_reason}")
    if not task.output.multiprocess_writable:
        raise ValueError(
            f"{task.output.describe()} cannot be written by several processes at once (HDF5 is "
            "a single-writer format), so it cannot be a distributed output; write to zarr/n5 "
            "(ba.create_source(..., format='zarr')) and convert afterwards, or use "
            "job_type='local'"
        )


async def run_task(task: BlockTask, options: ExecOptions) -> Any:
    """Hand a validated task to the runner of ``options.job_type``."""
    check_distributed(task, options)
    if task.mask is not None and task.mask.shape != task.grid.shape:
        raise ValueError(
            f"mask shape {task.mask.shape} must equal the output shape {task.grid.shape}"
        )
    runner = get_runner(options.job_type, options.job_config)
    if options.detach_on_cancel:
        runner.detach_on_cancel = True  # type: ignore[attr-defined]
    stats = options.stats if options.stats is not None else RunStats(name=task.name)
    stats.name = task.name
    return await runner.run(
        task,
        block_ids=options.block_ids,
        num_workers=options.num_workers,
        progress=options.progress,
        stats=stats,
        resume_from=options.resume_from,
        wait=options.wait,
    )
