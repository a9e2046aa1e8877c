"""The distributed worker: ``python -m bioimage_async.runners.worker TMP_FOLDER TASK_ID [TASK_ID ...]``.

Runs each task's blocks through the same ``execute_block`` as local runs, appends one progress
line per finished block, and ends each task with a ``.success`` or ``.failed`` sentinel. It
refuses a payload written by another Python minor version or package version. Imports stay lean
(no scipy at start-up): per-task start-up cost is paid by every slurm array task.

While a task runs, a daemon thread touches the output's lease when it names this run folder: a run
left running by its driver (``wait=False``) holds the output through these touches (see ``lease``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._version import __version__

if TYPE_CHECKING:
    from ..pipeline.execute import Compute
    from ..pipeline.task import BlockTask

#: Input buffers are reused from block to block for blocks up to this size (see pipeline.buffers).
WORKER_BUFFER_BYTES = 64 * 1024 * 1024


def _write_sentinel(folder: str, task_id: int, kind: str, content: dict[str, Any]) -> None:
    path = os.path.join(folder, "status", f"{task_id}.{kind}")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(content, handle)
    os.replace(tmp, path)


def _check_versions(manifest: dict[str, Any]) -> str | None:
    from .protocol import python_minor

    if manifest.get("python") != python_minor():
        return (
            f"this worker runs Python {python_minor()} ({sys.executable}) but the payload was "
            f"written by Python {manifest.get('python')}: pickled functions are not portable "
            "across minor versions. Point python_executable / remote_python at a Python "
            f"{manifest.get('python')} environment with bioimage_async {manifest.get('package_version')}."
        )
    if manifest.get("package_version") != __version__:
        return (
            f"this worker has bioimage_async {__version__} ({sys.executable}) but the payload was "
            f"written by {manifest.get('package_version')}; install the same version on the "
            "cluster (or set remote_python to an environment that has it)."
        )
    return None


def _already_done(progress_path: str) -> set[int]:
    from .protocol import parse_progress

    try:
        with open(progress_path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return set()
    return set(parse_progress(raw).tolist())


def _open_progress_log(progress_path: str) -> int:
    """The task's progress log, for appending on a line of its own: a record torn by an
    earlier attempt (a requeued task re-runs with the same log) is ended first, so the next
    record cannot merge with it."""
    fd = os.open(progress_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        os.write(fd, b"\n")
    return fd


def _touch_if_held(lease_path: str, folder: str) -> None:
    """Touch the output's lease if its record is this run's hold (or its driver's record of
    this run, which outlives a killed driver); errors are ignored (no file:
    the lease was released or broken; another record: not ours to keep alive)."""
    from .lease import kept_alive_by

    try:
        with open(lease_path) as handle:
            record = json.load(handle)
        if isinstance(record, dict) and kept_alive_by(record, folder):
            os.utime(lease_path)
    except (OSError, ValueError):
        pass


def _keep_touching(lease_path: str, folder: str, stop: threading.Event, every: float) -> None:
    while True:
        _touch_if_held(lease_path, folder)
        if stop.wait(every):
            return


@contextlib.contextmanager
def holding_output(
    lease_path: str | None, folder: str, every: float | None = None
) -> Iterator[None]:
    """Touch the output's lease every ``every`` s (``lease.HEARTBEAT``) from a daemon thread
    while the task's blocks run, so that the run's hold stays live while its workers write."""
    if lease_path is None:
        yield
        return
    from .lease import HEARTBEAT

    stop = threading.Event()
    args = (lease_path, folder, stop, HEARTBEAT if every is None else every)
    thread = threading.Thread(target=_keep_touching, args=args, daemon=True, name="lease-touch")
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _threaded_compute(task: BlockTask, busy: set[int]) -> Compute:
    """The kernel in the blocking thread pool (as ``threaded_compute``), keeping in ``busy``
    the blocks a thread is computing: a block that timed out while its thread goes on is not
    retried (``run_blocks(still_running=...)``), else each retry pins one more of the few
    threads and healthy blocks time out waiting for one."""
    from ..context import run_blocking
    from ..pipeline.compute_pool import compute_block

    def timed(block_id: int, data: Any, mask: Any) -> tuple[Any, float]:
        busy.add(block_id)
        try:
            started = time.perf_counter()  # inside the thread: queueing is not compute
            block = task.grid.block(block_id)
            result = compute_block(task.kernel, block, data, task.output.dtype, task.casting, mask)
            return result, time.perf_counter() - started
        finally:
            busy.discard(block_id)

    async def compute(block_id: int, data: Any, mask: Any) -> tuple[Any, float]:
        return await run_blocking(timed, block_id, data, mask)

    return compute


async def run_task(folder: str, task_id: int) -> int:
    """Process one task; returns the exit code (0 success, 1 blocks failed, 2/3 setup errors)."""
    started = time.perf_counter()
    try:
        with open(os.path.join(folder, "manifest.json")) as handle:
            manifest = json.load(handle)
        mismatch = _check_versions(manifest)
        if mismatch is not None:
            _write_sentinel(folder, task_id, "failed", {"error": mismatch, "failed": None})
            print(mismatch, file=sys.stderr)
            return 3
        from ..pipeline.buffers import input_buffers
        from ..pipeline.engine import run_blocks
        from ..pipeline.execute import execute_block
        from ..pipeline.stats import RunStats
        from ..pipeline.task import BlockTask
        from ..sources.registry import from_spec
        from .protocol import load_payload, progress_line

        payload = load_payload(folder)
        kernel, grid = payload.kernel, payload.grid
        specs = manifest["sources"]
        sources = {role: await from_spec(spec) for role, spec in specs.items()}
        task = BlockTask(
            manifest["name"],
            sources["input"],
            sources["output"],
            grid,
            kernel,
            sources.get("mask"),
            payload.casting,
        )
        with open(os.path.join(folder, "tasks", f"{task_id}.json")) as handle:
            groups: list[list[int]] = json.load(handle)
        lease_path = task.output.writer_lock_path()
    except (Exception, SystemExit):  # noqa: BLE001 - any setup failure is this task's failure
        error = traceback.format_exc()
        _write_sentinel(folder, task_id, "failed", {"error": error, "failed": None})
        print(error, file=sys.stderr)
        return 2

    progress_path = os.path.join(folder, "progress", f"{task_id}.log")
    done = _already_done(progress_path)
    todo = [[b for b in group if b not in done] for group in groups]
    todo = [group for group in todo if group]
    total = sum(len(g) for g in todo)
    fd = _open_progress_log(progress_path)

    marked: set[int] = set()

    def mark(block_id: int) -> None:
        os.write(fd, progress_line(block_id))  # one atomic append per finished block
        marked.add(block_id)

    cost = kernel.compute_cost
    computing: set[int] = set()
    compute = _threaded_compute(task, computing) if cost != "none" else None
    stats = RunStats(name=task.name)
    in_flight = 4 if cost == "none" else 2
    buffers = input_buffers(task, in_flight, WORKER_BUFFER_BYTES)  # as in local runs
    try:
        with holding_output(lease_path, folder):
            outcome = await run_blocks(
                todo,
                lambda block_id: execute_block(task, block_id, compute, stats, buffers),
                total=total,
                in_flight=in_flight,
                progress=False,
                stats=stats,
                name=f"{task.name} task {task_id}",
                on_done=mark,
                retries=payload.retries,
                block_timeout=payload.block_timeout,
                still_running=computing.__contains__,
            )
    finally:
        os.close(fd)
    summary = {
        "blocks": total,
        "seconds": round(time.perf_counter() - started, 3),
        "read_s": round(stats.read_s, 3),
        "compute_s": round(stats.compute_s, 3),
        "write_s": round(stats.write_s, 3),
        "skipped": stats.blocks_skipped,  # empty mask: done for a resume, but never written
        "retries": int(stats.extra.get("retries", 0)),
    }
    # a block neither done nor failed would otherwise pass as done under a success sentinel
    unaccounted = [b for g in todo for b in g if b not in marked and b not in outcome.failed]
    if unaccounted:
        outcome.failed = sorted(set(outcome.failed) | set(unaccounted))
        outcome.first_error = outcome.first_error or (
            f"blocks {unaccounted[:20]} of task {task_id} were neither written nor failed"
        )
    if outcome.failed:
        _write_sentinel(
            folder,
            task_id,
            "failed",
            {"failed": outcome.failed, "error": outcome.first_error, **summary},
        )
        print(outcome.first_error, file=sys.stderr)
        return 1
    _write_sentinel(folder, task_id, "success", summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(
            "usage: python -m bioimage_async.runners.worker TMP_FOLDER TASK_ID [TASK_ID ...]",
            file=sys.stderr,
        )
        return 2
    folder = args[0]
    code = 0
    for task_id in (int(a) for a in args[1:]):
        code = max(code, asyncio.run(run_task(folder, task_id)))
    return code


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # every sentinel is written: exit now, without waiting for a thread still stuck in a block
    # that block_timeout gave up on (the interpreter would join it forever)
    os._exit(status)
