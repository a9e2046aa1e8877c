"""A pool of compute worker processes driven from the event loop.

Why not ``concurrent.futures.ProcessPoolExecutor``: with spawn/forkserver (tensorstore is not
fork-safe) it re-runs the user's ``__main__`` script in every child, which breaks scripts
without an ``if __name__ == '__main__'`` guard, and it cannot kill a worker that is mid-block.
Here each worker is ``python -m bioimage_async.pipeline.compute_worker``, started with asyncio
subprocesses (never fork), fed through pipes; cancelling kills the workers at once. The kernel
is cloudpickled once per worker, so closures and functions from the user's own modules work.
Workers never open a store: for local runs tensorstore lives only in the parent.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from typing import Any

import cloudpickle
import numpy as np

from ..blocking.grid import Block, BlockGrid
from ..errors import BlockComputeError, InvalidArgumentError, WorkerCrashedError
from ..kernels.casting import cast_checked
from .compute_worker import HEADER, LENGTH
from .task import BlockKernel


def block_where(block: Block) -> str:
    """'block 7 (region [0:64, 64:128])', for error messages."""
    return (
        f"block {block.id} (region [" + ", ".join(f"{s.start}:{s.stop}" for s in block.roi) + "])"
    )


def compute_block(
    kernel: BlockKernel,
    block: Block,
    data: np.ndarray,
    out_dtype: np.dtype | None,
    casting: str = "checked",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Run the kernel and check its result, casting (checked) to the output dtype where it runs.

    ``mask`` (the block's, where it is partial) limits the check to the voxels it writes."""
    result = np.asarray(kernel.compute(block, data))
    if result.shape != block.shape:
        raise InvalidArgumentError(
            f"the kernel returned shape {result.shape} for block {block.id}, expected {block.shape}"
        )
    if out_dtype is not None and result.dtype != out_dtype:
        result = cast_checked(result, out_dtype, casting, block_where(block), inside=mask)
    return result


def worker_environment() -> dict[str, str]:
    """The parent's import path (so user modules resolve) and one BLAS thread per worker."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p] + env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env["BIOIMAGE_ASYNC_POOL_PID"] = str(os.getpid())  # see compute_worker.die_with_parent
    return env


class _Worker:
    """One worker process and its pipes; frames as in ``compute_worker`` (pickle protocol 5,
    arrays as out-of-band buffers written straight from their memory: no pickled copy)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        #: why the worker could not load the kernel (its traceback), else None
        self.setup_error: str | None = None

    async def send(self, obj: Any) -> None:
        assert self.process.stdin is not None
        stdin = self.process.stdin
        buffers: list[pickle.PickleBuffer] = []
        if isinstance(obj, bytes):  # an already pickled message (the kernel set-up)
            payload = obj
        else:
            payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        stdin.write(HEADER.pack(len(payload), len(buffers)))
        stdin.write(payload)
        for buffer in buffers:
            raw = buffer.raw()
            stdin.write(LENGTH.pack(raw.nbytes))
            stdin.write(raw)
        await stdin.drain()

    async def receive(self) -> Any:
        assert self.process.stdout is not None
        stdout = self.process.stdout
        size, count = HEADER.unpack(await stdout.readexactly(HEADER.size))
        payload = await stdout.readexactly(size)
        buffers = []
        for _ in range(count):
            (length,) = LENGTH.unpack(await stdout.readexactly(LENGTH.size))
            buffers.append(await stdout.readexactly(length))
        return pickle.loads(payload, buffers=buffers)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class ComputePool:
    """``num_workers`` compute processes; at most one block per worker at a time."""

    def __init__(
        self,
        kernel: BlockKernel,
        grid: BlockGrid,
        out_dtype: np.dtype,
        num_workers: int,
        casting: str = "checked",
    ) -> None:
        self._setup = cloudpickle.dumps((kernel, grid, out_dtype, casting))
        self._num_workers = num_workers
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: list[_Worker] = []
        self._start_lock: asyncio.Lock | None = None
        self._closing = False
        self._replacements: set[asyncio.Future[None]] = set()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bioimage_async.pipeline.compute_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=worker_environment(),
        )
        worker = _Worker(process)
        self._all.append(worker)
        try:  # wait until it is ready: its start-up is not a block's compute (block_timeout)
            await worker.send(self._setup)
            ok, error, _ = await worker.receive()
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
            code = await worker.process.wait()
            ok, error = False, f"the compute worker exited (exit code {code}) while starting"
        if not ok:
            worker.setup_error = str(error)
        return worker

    async def _ensure_started(self) -> asyncio.Queue[_Worker]:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._idle is None:
                idle: asyncio.Queue[_Worker] = asyncio.Queue()
                for worker in await asyncio.gather(
                    *(self._spawn() for _ in range(self._num_workers))
                ):
                    idle.put_nowait(worker)
                self._idle = idle
        return self._idle

    async def start(self) -> None:
        """Start the workers now (they start with the first block otherwise): a run with a
        ``block_timeout`` must not count their start-up (seconds: a Python process each,
        importing numpy and the kernel) against its first blocks, which then time out, and the
        replacement of each killed worker starts as slowly, so every block timed out.

        Cancellation: the workers started so far are killed by ``aclose(kill=True)``."""
        await self._ensure_started()

    async def compute(
        self, block_id: int, data: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Compute one block in an idle worker (``mask``: the block's partial mask, which the
        cast checks within). Cancelling (a cancelled run, or a ``block_timeout``) kills that
        worker mid-block and starts a replacement."""
        idle = await self._ensure_started()
        worker = await idle.get()
        if worker.setup_error is not None:
            worker.kill()
            self._replace(worker, idle)
            raise BlockComputeError(
                f"{worker.setup_error.rstrip()}\nblock {block_id}: the compute worker could not "
                "load the block function (is its module importable in a fresh Python, from "
                "the same folder?)"
            )
        try:
            await worker.send((block_id, data, mask))
            ok, result, seconds = await worker.receive()
        except asyncio.CancelledError:
            worker.kill()  # mid-block: its pipe is in an unknown state
            self._replace(worker, idle)
            raise
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as error:
            worker.kill()
            code = await worker.process.wait()
            self._replace(worker, idle)  # in the background: not inside this block's timeout
            raise WorkerCrashedError(
                f"the compute worker died (exit code {code}) while computing block {block_id}; "
                "it was replaced. Out of memory? Check the block size and num_workers."
            ) from error
        idle.put_nowait(worker)
        if not ok:
            raise BlockComputeError(result)
        return result, seconds

    def _replace(self, worker: _Worker, idle: asyncio.Queue[_Worker]) -> None:
        """Start a worker in place of a killed one, unless the pool is closing."""
        if self._closing:
            return

        async def replace() -> None:
            await worker.process.wait()
            if not self._closing:
                idle.put_nowait(await self._spawn())

        self._replacements.add(asyncio.ensure_future(replace()))

    async def aclose(self, *, kill: bool) -> None:
        """Stop every worker: close stdin (they exit), or kill them on cancellation/failure."""
        self._closing = True
        for pending in self._replacements:
            pending.cancel()
        await asyncio.gather(*self._replacements, return_exceptions=True)
        for worker in self._all:
            if kill:
                worker.kill()
            elif worker.process.stdin is not None and not worker.process.stdin.is_closing():
                worker.process.stdin.close()
        for worker in self._all:
            try:
                await asyncio.wait_for(worker.process.wait(), timeout=10)
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
