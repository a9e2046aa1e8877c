"""What every block-wise op does the same way: options, the output, checks, the hand-off."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, RunLockedError
from ..pipeline.stats import RunStats
from ..pipeline.task import BlockTask
from ..runners.base import Runner
from ..runners.distributed import DistributedRunner
from ..runners.files import LocalFiles
from ..runners.lease import DRIVES, RUN_FOLDER, Lease, holder_text
from ..runners.options import ExecKwargs, ExecOptions
from ..runners.registry import load_runner_backends, runner_backend
from ..runners.run import Run
from ..sources.base import Source
from ..sources.numpy_source import NumpySource
from .overlap import same_voxels, shares_voxels

logger = logging.getLogger("bioimage_async")

#: What an op returns: the output (the given Source, or the allocated numpy array of a local run
#: without ``output``), or a ``ba.Run`` handle when ``wait=False``.
OpResult = Any


async def exec_options(kwargs: ExecKwargs) -> ExecOptions:
    """The run's options, checked against the runner backends (loaded off the event loop)."""
    await load_runner_backends()
    return ExecOptions.from_kwargs(kwargs)


def allocate_output(
    output: Source | None, shape: tuple[int, ...], dtype: np.dtype, options: ExecOptions
) -> tuple[Source, np.ndarray | None]:
    """The output source, allocating a numpy array for local runs when none was given."""
    if output is not None:
        return output, None
    if options.distributed:
        raise InvalidArgumentError(
            "'output' is required for distributed execution: create one with "
            "await ba.create_source(path, shape=..., dtype=..., chunks=...)"
        )
    array = np.zeros(shape, dtype=dtype)
    return NumpySource(array), array


def refuse_empty(src: Source, op: str) -> None:
    """An input with an empty axis has no voxel to reduce: said as such (a pyramid divided by
    zero, a downsample named a block id out of range)."""
    if 0 in src.shape:
        raise InvalidArgumentError(
            f"{op} needs an input with voxels, but {src.describe()} has shape {src.shape} (an "
            "empty axis)"
        )


def check_distributed(task: BlockTask, options: ExecOptions) -> None:
    """Distributed workers reopen every source from its spec: refuse what cannot be reopened."""
    if not options.distributed:
        return
    for role, source in task.sources().items():
        if not source.reopenable:
            raise InvalidArgumentError(
                f"the {role} ({source.describe()}) lives in this process's memory and cannot be "
                f"reopened by {options.job_type} workers; write it to zarr/n5 first "
                "(ba.create_source + ba.copy) or use job_type='local'"
            )
    if not task.output.writable:
        raise InvalidArgumentError(f"the output is not writable: {task.output.read_only_reason}")
    if not task.output.multiprocess_writable:
        raise InvalidArgumentError(
            f"{task.output.describe()} cannot be written by several processes at once (HDF5 is "
            "a single-writer format), so it cannot be a distributed output; write to zarr/n5 "
            "(ba.create_source(..., format='zarr')) and convert afterwards, or use "
            "job_type='local'"
        )


def _reads_only_its_own_voxels(task: BlockTask) -> bool:
    """Whether each block reads exactly the input voxels it writes (an in-place kernel without
    a halo over an input of the output's shape): then writing into the input is safe."""
    grid = task.grid
    if task.input.shape != grid.shape or any(grid.halo) or grid.num_blocks == 0:
        return False
    probes = {0, grid.num_blocks - 1, grid.block_id(tuple(n // 2 for n in grid.grid_shape))}
    return all(
        tuple(task.kernel.input_roi(block)) == block.roi
        for block in (grid.block(i) for i in sorted(probes))
    )


def check_overlap(task: BlockTask) -> None:
    """Refuse an output that holds voxels of the input where blocks read other blocks'
    voxels (a downsample into a region of its own input, a halo): whether a block reads a
    voxel before or after another block overwrote it would depend on the order blocks run in,
    and the run would report success with wrong values."""
    if not shares_voxels(task.input, task.output):
        return
    if same_voxels(task.input, task.output) and _reads_only_its_own_voxels(task):
        return
    raise InvalidArgumentError(
        f"{task.name} cannot write into {task.output.describe()}: it holds voxels of its input "
        f"({task.input.describe()}; the same array, a view of it, or a handle on it), and "
        "blocks read input voxels that other blocks write, so results would depend on the "
        "order the blocks run in. Write into a separate array (ba.create_source), then copy "
        "it back if needed"
    )


def check_task(task: BlockTask, options: ExecOptions) -> None:
    """Everything that can be refused before anything runs (or is created)."""
    check_overlap(task)
    check_distributed(task, options)
    if task.mask is not None and task.mask.shape != task.grid.shape:
        raise InvalidArgumentError(
            f"mask shape {task.mask.shape} must equal the output shape {task.grid.shape}"
        )
    if options.block_ids is not None:
        task.grid.check_ids(options.block_ids)


def output_lease(task: BlockTask, options: ExecOptions) -> Lease | None:
    """The record that marks the output as being written by this run (see ``Lease``). A resume
    joins the hold of the run it resumes, if that run was left running (it checks the run's
    tasks itself)."""
    path = task.output.writer_lock_path() if options.output_lock else None
    if path is None:
        return None
    output = task.output.describe()

    def refuse(holder: dict[str, Any]) -> Exception:
        return RunLockedError(
            f"{output} is being written by another run ({holder_text(holder)}); a second run "
            "into it at the same time would leave a per-chunk mix of both. "
            f"{wait_advice(holder)}, or pass output_lock=False if the two runs write disjoint, "
            "chunk-aligned regions"
        )

    return Lease(LocalFiles(), path, refuse, joins=options.resume_from)


def wait_advice(holder: dict[str, Any]) -> str:
    """How to wait for the holder or stop it: a run left running has no process to stop."""
    folder = holder.get(RUN_FOLDER, holder.get(DRIVES))
    if folder is None:
        return "Wait for that run"
    return (
        f"Wait for it (await (await ba.attach({folder!r})).wait(), or bioimage-async status "
        f"{folder}) or stop it (bioimage-async cancel {folder})"
    )


async def take_output_lease(task: BlockTask, options: ExecOptions) -> Lease | None:
    """The output's lease, held; None without one (no lock, or a folder we cannot write)."""
    lease = output_lease(task, options)
    if lease is None:
        return None
    try:
        return await lease.acquire()
    except OSError as error:  # a folder we cannot write a record into: run unguarded
        logger.warning("cannot mark %s as being written (%s)", task.output.describe(), error)
        return None


def left_running(runner: Runner) -> Run | None:
    """The run this call left going without its driver (``wait=False``, or a wait cancelled
    with ``detach_on_cancel``); other runners run in this process and leave nothing."""
    return runner.detached if isinstance(runner, DistributedRunner) else None


async def leave_output(lease: Lease, run: Run | None, *, ended: bool) -> None:
    """Hand the output's lease to a run left running (its workers keep it), else release it;
    ``ended``: the runner returned, so a joined run hold ended here (a completed resume)."""
    if run is not None:
        try:
            await lease.hand_over(run.tmp_folder, job_type=run.backend.name)
            return
        except OSError as error:
            logger.warning(
                "cannot hand the lock of the output over to the run %s (%s): the output is "
                "not marked as being written while it runs",
                run.tmp_folder,
                error,
            )
    await lease.release(run_ended=ended)


async def run_task(task: BlockTask, options: ExecOptions) -> Any:
    """Hand a validated task to the runner of ``options.job_type``, holding the output's lease
    while this process drives the run. A run left running (``wait=False``, a wait cancelled with
    ``detach_on_cancel``) takes the lease over: its workers keep it until they end.

    Cancellation: the hand-over or release is shielded, then the cancel goes on."""
    check_task(task, options)
    task.casting = options.casting
    backend = runner_backend(options.job_type)
    assert options.job_config is not None  # ExecOptions fills in the backend's default
    runner = backend.runner(options.job_config)
    stats = options.stats if options.stats is not None else RunStats(name=task.name)
    stats.name = task.name
    lease = await take_output_lease(task, options)
    runner.output_lease = lease
    ended = False
    try:
        result = await runner.run(task, options, stats)
        ended = True
        return result
    finally:
        if lease is not None:
            await asyncio.shield(leave_output(lease, left_running(runner), ended=ended))


def finish(result: Any, options: ExecOptions, output: Any, array: np.ndarray | None) -> OpResult:
    """The op's return value: the Run (wait=False), the allocated array, or the output."""
    if not options.wait:
        return result
    return array if array is not None else output
