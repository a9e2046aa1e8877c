"""Runner configuration objects (keyword-only, with a readable repr)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class RunnerConfig:
    """Settings shared by every backend.

    ``memory_budget`` bounds the bytes of blocks held in flight by this process (the in-flight
    count is lowered to fit); ``in_flight`` overrides the default count. ``tmp_root`` (where
    distributed runs keep their folder; default: the system temp dir), ``poll_interval`` (seconds
    between scheduler polls) and ``python_executable`` (the workers' interpreter; default: this
    one) matter for the subprocess and slurm backends.
    """

    tmp_root: str | None = None
    poll_interval: float = 1.0
    python_executable: str | None = None
    memory_budget: int = 256 * 1024 * 1024
    in_flight: int | None = None
