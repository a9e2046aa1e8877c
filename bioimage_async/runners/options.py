"""The execution keywords every block-wise op takes, as one typed, validated object.

``ExecKwargs`` is what the ops' signatures accept (``**exec: Unpack[ExecKwargs]``, so editors and
mypy see every keyword); ``ExecOptions`` is the validated object the op hands to the runner. A
composite op (``pyramid``) derives each step's options with ``options.replace(...)``: nothing is
forwarded blindly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Literal, TypedDict, cast

import numpy as np

from ..errors import InvalidArgumentError
from ..pipeline.progress import ProgressArg
from ..pipeline.stats import RunStats
from .config import RunnerConfig

#: How values meet the output dtype: "checked" refuses a value the output cannot hold (out of
#: range, NaN/inf into integers); "unsafe" is numpy's astype (wraps); "clip" clips to the range
#: (NaN to 0, and to False for bool).
Casting = Literal["checked", "unsafe", "clip"]
CASTINGS: tuple[str, ...] = ("checked", "unsafe", "clip")


class ExecKwargs(TypedDict, total=False):
    """The execution keywords of ``copy``, ``downsample``, ``map_blocks`` and ``pyramid``.

    Attributes:
        job_type: where blocks run: "local" (this process, heavy compute in a process pool),
            "subprocess" (worker processes through a run folder), "slurm" (a job array), or a
            backend registered with ``ba.register_runner``.
        job_config: the backend's config (``ba.RunnerConfig``; ``ba.SlurmConfig`` for slurm,
            default ``SlurmConfig.load()`` from the config file).
        num_workers: parallel workers (compute processes, worker processes, array tasks).
        block_ids: only these block ids (C order over the grid), e.g. a RunnerError's
            ``failed_block_ids``; integers only.
        resume_from: a run folder (``RunnerError.tmp_folder``) to finish: only its blocks
            without a done record run, with the original layout (every backend).
        progress: True, False, or a callable ``(done, total)``; default a bar on a terminal.
        stats: a ``ba.RunStats`` filled in place.
        wait: False returns a ``ba.Run`` handle right after submission (distributed only).
        detach_on_cancel: cancelling the wait leaves distributed jobs running (reattach later).
        casting: "checked" (default: values the output cannot hold are an error naming the
            block), "clip" or "unsafe" (numpy's wrapping).
        retries: re-run a failed block up to this many times before it counts as failed.
        block_timeout: fail a block whose compute runs longer (seconds; every backend).
        output_lock: False lets a second live run write the same output (only for disjoint,
            chunk-aligned regions).
    """

    job_type: str
    job_config: RunnerConfig | None
    num_workers: int
    block_ids: Iterable[int] | None
    resume_from: str | None
    progress: ProgressArg
    stats: RunStats | None
    wait: bool
    detach_on_cancel: bool
    casting: Casting
    retries: int
    block_timeout: float | None
    output_lock: bool


def block_id_list(block_ids: Any) -> tuple[int, ...]:
    """``block_ids`` as integers, refusing strings, floats and non-iterables with the value."""
    if isinstance(block_ids, (str, bytes)) or not isinstance(block_ids, Iterable):
        raise InvalidArgumentError(
            f"block_ids must be an iterable of integer block ids (e.g. [0, 5, 12] or "
            f"error.failed_block_ids), got {block_ids!r:.80}"
        )
    ids = []
    for value in block_ids:
        if isinstance(value, bool) or not isinstance(value, (Integral, np.integer)):
            raise InvalidArgumentError(
                f"block_ids must hold integers, got {value!r} ({type(value).__name__}) in "
                f"{block_ids!r:.80}"
            )
        ids.append(int(value))
    return tuple(ids)


@dataclass(frozen=True, kw_only=True)
class ExecOptions:
    """Validated execution options: which backend, how many workers, which blocks, and how."""

    job_type: str = "local"
    job_config: RunnerConfig | None = None
    num_workers: int = 1
    block_ids: Sequence[int] | None = None
    resume_from: str | None = None
    progress: ProgressArg = None
    stats: RunStats | None = None
    wait: bool = True
    detach_on_cancel: bool = False
    casting: Casting = "checked"
    retries: int = 0
    block_timeout: float | None = None
    #: refuse to run while another live run writes the same output (False: the caller knows
    #: the two runs write disjoint, chunk-aligned regions)
    output_lock: bool = True

    def __post_init__(self) -> None:
        from .registry import runner_backend

        backend = runner_backend(self.job_type)
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, Integral)
            or self.num_workers < 1
        ):
            raise InvalidArgumentError(
                f"num_workers must be a positive integer, got {self.num_workers!r}"
            )
        if self.block_ids is not None:
            object.__setattr__(self, "block_ids", block_id_list(self.block_ids))
        if self.resume_from is not None and self.block_ids is not None:
            raise InvalidArgumentError("Pass either 'resume_from' or 'block_ids', not both.")
        if self.resume_from is not None and not backend.resumable:
            raise InvalidArgumentError(
                f"resume_from is not available for job_type={self.job_type!r}; re-run the "
                "missing blocks with block_ids=error.failed_block_ids"
            )
        if not self.wait and not backend.detachable:
            raise InvalidArgumentError(
                f"wait=False needs a backend whose runs outlive the caller "
                f"({', '.join(b for b in _detachable())}); job_type={self.job_type!r} runs "
                "in this process"
            )
        if self.casting not in CASTINGS:
            raise InvalidArgumentError(f"casting must be one of {CASTINGS}, got {self.casting!r}")
        if (
            isinstance(self.retries, bool)
            or not isinstance(self.retries, Integral)
            or (self.retries < 0)
        ):
            raise InvalidArgumentError(f"retries must be an integer >= 0, got {self.retries!r}")
        if self.block_timeout is not None and not (
            isinstance(self.block_timeout, (int, float)) and self.block_timeout > 0
        ):
            raise InvalidArgumentError(
                f"block_timeout must be a positive number of seconds or None, got "
                f"{self.block_timeout!r}"
            )
        object.__setattr__(self, "job_config", backend.config(self.job_config))

    @classmethod
    def from_kwargs(cls, kwargs: ExecKwargs | dict[str, Any]) -> ExecOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidArgumentError(
                f"unexpected keyword argument(s) {unknown}; the execution keywords are: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**kwargs)

    def replace(self, **changes: Any) -> ExecOptions:
        return dataclasses.replace(self, **changes)

    def as_kwargs(self) -> ExecKwargs:
        """The keywords that rebuild these options (to hand a step of a composite op on)."""
        return cast(ExecKwargs, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @property
    def distributed(self) -> bool:
        from .registry import runner_backend

        return runner_backend(self.job_type).distributed


def _detachable() -> list[str]:
    from .registry import runner_backends

    return [b.name for b in runner_backends() if b.detachable]
