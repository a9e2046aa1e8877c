"""The launcher seam of distributed runs: start tasks, report their states, cancel them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from .protocol import RunFolder

#: Scheduler states after which a task runs no more.
TERMINAL_FAILURES = frozenset(
    {
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "GONE",
    }
)
ALIVE = frozenset(
    {
        "PENDING",
        "RUNNING",
        "CONFIGURING",
        "COMPLETING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
    }
)


@dataclass(frozen=True)
class TaskState:
    """A task as the scheduler sees it; ``log`` names its output file under ``logs/``."""

    state: str
    exit_code: str | None = None
    reason: str | None = None
    log: str | None = None

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    def describe(self) -> str:
        parts = [self.state]
        if self.exit_code:
            parts.append(f"exit code {self.exit_code}")
        if self.reason and self.reason not in ("None", ""):
            parts.append(f"reason {self.reason}")
        return ", ".join(parts)


class Launcher(ABC):
    """Starts a run's tasks somewhere and answers for them until they end."""

    job_type: str = ""

    @abstractmethod
    async def submit(
        self, folder: RunFolder, task_ids: list[int], num_workers: int
    ) -> dict[str, Any]:
        """Start the tasks (at most ``num_workers`` at once); returns what to record in the manifest."""

    @abstractmethod
    async def states(self, folder: RunFolder) -> dict[int, TaskState]:
        """The states of every task of every attempt that the scheduler still knows."""

    @abstractmethod
    async def cancel(self, folder: RunFolder) -> None:
        """Stop every task of the run that is still pending or running."""

    async def close(self) -> None:  # noqa: B027 - optional hook; most launchers hold nothing
        """Release connections."""
