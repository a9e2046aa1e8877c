"""The subprocess backend: ``num_workers`` worker processes on this machine, the local mirror of slurm.

Each worker process gets a contiguous list of tasks (``python -m bioimage_async.runners.worker
TMP t1 t2 ...``) and runs in its own session, so it survives a detached or crashed caller.
States come from the processes this Python started, or, for a run attached from another
process, from the recorded pids.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from .config import RunnerConfig
from .files import LocalFiles, RunFiles
from .launcher import Launcher, TaskState
from .protocol import RunFolder
from .registry import RunnerBackend


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"bioimage_async.runners.worker" in handle.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (each worker leads its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SubprocessLauncher(Launcher):
    job_type = "subprocess"

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    async def submit(
        self, folder: RunFolder, task_ids: list[int], num_workers: int
    ) -> dict[str, Any]:
        python = self.config.python_executable or sys.executable
        slots = [task_ids[i::num_workers] for i in range(min(num_workers, len(task_ids)))]
        slots = [sorted(s) for s in slots if s]
        attempt = len(folder.manifest.attempts)
        records: list[dict[str, Any]] = []
        from ..pipeline.compute_pool import worker_environment

        try:
            for index, tasks in enumerate(slots):
                log_name = f"worker-{attempt}-{index}.log"
                with open(folder.join("logs", log_name), "ab") as log:
                    process = await asyncio.create_subprocess_exec(
                        python,
                        "-m",
                        "bioimage_async.runners.worker",
                        folder.path,
                        *(str(t) for t in tasks),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        env=worker_environment(),
                        start_new_session=True,
                    )
                self._processes[process.pid] = process
                records.append({"pid": process.pid, "tasks": tasks, "log": log_name})
        except BaseException:
            # cancelled (or failed) half-way: the workers started so far are in no manifest,
            # so nothing would stop them; they would go on writing after the run was cancelled
            for record in records:
                _kill_group(int(record["pid"]))
            raise
        return {"workers": records, "job_ids": [str(r["pid"]) for r in records]}

    def _exit_code(self, pid: int) -> int | None:
        process = self._processes.get(pid)
        return None if process is None else process.returncode

    async def states(self, folder: RunFolder) -> dict[int, TaskState]:
        succeeded, failed = await folder.sentinels()
        finished = succeeded | failed
        states: dict[int, TaskState] = {}
        for attempt in folder.manifest.attempts:
            for record in attempt.get("workers", []):
                pid, log = int(record["pid"]), record.get("log")
                code = self._exit_code(pid)
                alive = code is None and _pid_alive(pid)
                first_open = True
                died_in: int | None = None  # the task a dead worker ended in
                for task_id in record["tasks"]:
                    if task_id in finished:
                        states[task_id] = TaskState("COMPLETED", log=log)
                    elif alive:
                        states[task_id] = TaskState("RUNNING" if first_open else "PENDING", log=log)
                        first_open = False
                    elif died_in is not None:  # queued behind it in the same process
                        states[task_id] = TaskState(
                            "FAILED" if code is not None else "GONE",
                            reason=f"never started: its worker process (pid {pid}) ended in "
                            f"task {died_in} first",
                            log=log,
                        )
                    elif code == 0:
                        states[task_id] = TaskState("COMPLETED", "0", log=log)
                    elif code is not None and code < 0:
                        states[task_id] = TaskState(
                            "FAILED", f"killed by {signal.Signals(-code).name}", log=log
                        )
                    else:
                        states[task_id] = TaskState(
                            "FAILED" if code is not None else "GONE",
                            None if code is None else str(code),
                            "worker process ended" if code is None else None,
                            log=log,
                        )
                    if not alive and code != 0 and task_id not in finished and died_in is None:
                        died_in = task_id
        return states

    async def cancel(self, folder: RunFolder) -> None:
        pids = [int(r["pid"]) for a in folder.manifest.attempts for r in a.get("workers", [])]
        for pid in pids:
            if self._exit_code(pid) is None and _pid_alive(pid):
                _kill_group(pid)
        for pid in pids:
            process = self._processes.get(pid)
            if process is not None:
                await process.wait()


class SubprocessBackend(RunnerBackend):
    """``job_type='subprocess'``: worker processes on this machine through the run-folder
    protocol (the local mirror of slurm: same folder, same worker, same resume)."""

    name = "subprocess"
    description = "worker processes on this machine, through a run folder"

    async def connect(self, config: RunnerConfig) -> tuple[RunFiles, Launcher]:
        return LocalFiles(), SubprocessLauncher(config)


RUNNER_BACKEND = SubprocessBackend()
