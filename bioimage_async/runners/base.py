"""The Runner: executes a BlockTask with validated ExecOptions (local, subprocess, slurm, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from .config import RunnerConfig
from .lease import Lease
from .options import ExecOptions


class Runner(ABC):
    """Executes a BlockTask; raises RunnerError naming exactly the blocks that are missing."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        #: the output's lease held by this process for the run (None: unlocked); a distributed
        #: runner names its run folder in it before its workers start (``Lease.note_run``)
        self.output_lease: Lease | None = None

    @abstractmethod
    async def run(self, task: BlockTask, options: ExecOptions, stats: RunStats) -> Any:
        """Run the task's blocks (``options.block_ids`` or all); return a Run handle for a
        detached run (``options.wait`` False), else None."""
