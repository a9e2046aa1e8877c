"""The runner seam: local, subprocess and slurm backends execute the same BlockTask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .config import RunnerConfig

JOB_TYPES = ("local", "subprocess", "slurm")


class Runner(ABC):
    """Executes a BlockTask; raises RunnerError naming exactly the blocks that are missing."""

    def __init__(self, config: RunnerConfig | None = None) -> None:
        self.config = config if config is not None else RunnerConfig()

    @abstractmethod
    async def run(
        self,
        task: BlockTask,
        *,
        block_ids: Sequence[int] | None,
        num_workers: int,
        progress: ProgressArg,
        stats: RunStats,
        resume_from: str | None = None,
        wait: bool = True,
    ) -> Any: ...


def get_runner(job_type: str, job_config: RunnerConfig | None = None) -> Runner:
    if job_type == "local":
        from .local import LocalRunner

        return LocalRunner(job_config)
    if job_type == "subprocess":
        from .subprocess import SubprocessRunner

        return SubprocessRunner(job_config)
    if job_type == "slurm":
        from .slurm import SlurmRunner

        return SlurmRunner(job_config)
    raise ValueError(f"job_type must be one of {JOB_TYPES}, got {job_type!r}")
