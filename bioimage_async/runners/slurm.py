"""The slurm backend: one ``sbatch --array`` per run (split where it exceeds MaxArraySize).

With ``SlurmConfig(host=None)`` sbatch/squeue/sacct/scancel run on this machine; with ``host``
set, the same commands and the run folder go through one asyncssh connection. Task states come
from ``squeue -t all -r`` (finished tasks stay listed for MinJobAge) and, for tasks squeue no
longer knows, from ``sacct`` when accounting is on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import sys
from typing import Any

from ..errors import ConfigError
from .config import RunnerConfig, SlurmConfig
from .files import LocalFiles, RunFiles
from .launcher import Launcher, TaskState
from .protocol import RunFolder
from .registry import RunnerBackend
from .ssh import CommandResult, LocalShell, ResilientSftpFiles, SshSession

logger = logging.getLogger("bioimage_async")

DEFAULT_MAX_ARRAY_SIZE = 1001
_MAX_ARRAY_SIZES: dict[str, int] = {}  # per cluster (shell description), asked once per process


def sbatch_script(
    config: SlurmConfig,
    folder: RunFolder,
    python: str,
    name: str,
    size: int,
    offset: int,
    throttle: int,
) -> str:
    """The batch script for array tasks ``0..size-1`` running tasks ``offset..offset+size-1``."""
    lines = config.shebang.strip().splitlines() if config.shebang else ["#!/bin/bash"]
    interpreter, preamble = lines[0], lines[1:]
    directives = [
        f"--job-name={shlex.quote('ba-' + name)}",
        f"--output={shlex.quote(folder.join('logs', 'slurm-%A_%a.log'))}",
        f"--array=0-{size - 1}%{max(1, throttle)}",
        f"--cpus-per-task={config.cpus_per_task}",
        "--export=ALL",
    ]
    for flag, value in (
        ("partition", config.partition),
        ("time", config.time),
        ("mem", config.mem),
        ("account", config.account),
        ("qos", config.qos),
        ("constraint", config.constraint),
    ):
        if value:
            directives.append(f"--{flag}={shlex.quote(str(value))}")
    if config.gpus > 0:
        directives.append(f"--gpus={config.gpus}")
    directives.extend(shlex.quote(a) for a in config.extra_sbatch_args)
    body = [interpreter, *(f"#SBATCH {d}" for d in directives), *preamble]
    body += [
        "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}",
        f"exec {shlex.quote(python)} -m bioimage_async.runners.worker "
        f"{shlex.quote(folder.path)} $((SLURM_ARRAY_TASK_ID + {offset}))",
    ]
    return "\n".join(body) + "\n"


_STATE_ALIASES = {
    "CA": "CANCELLED",
    "F": "FAILED",
    "TO": "TIMEOUT",
    "CD": "COMPLETED",
    "R": "RUNNING",
    "PD": "PENDING",
    "OOM": "OUT_OF_MEMORY",
    "NF": "NODE_FAIL",
}


def _normalize_state(state: str) -> str:
    state = state.strip().split()[0] if state.strip() else "UNKNOWN"
    state = state.rstrip("+")
    return _STATE_ALIASES.get(state, state)


class SlurmLauncher(Launcher):
    job_type = "slurm"

    def __init__(self, config: SlurmConfig, shell: LocalShell | SshSession) -> None:
        self.config = config
        self.shell = shell
        self._max_array_size: int | None = config.max_array_size

    def python(self) -> str:
        if self.config.remote_python:
            return self.config.remote_python
        if self.config.python_executable:
            return self.config.python_executable
        return sys.executable if self.config.host is None else "python3"

    async def max_array_size(self) -> int:
        if self._max_array_size is None:
            cluster = self.shell.description
            if cluster not in _MAX_ARRAY_SIZES:
                result = await self.shell.run(["scontrol", "show", "config"])
                match = re.search(r"MaxArraySize\s*=\s*(\d+)", result.stdout)
                _MAX_ARRAY_SIZES[cluster] = int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE
            self._max_array_size = _MAX_ARRAY_SIZES[cluster]
        return self._max_array_size

    async def submit(
        self, folder: RunFolder, task_ids: list[int], num_workers: int
    ) -> dict[str, Any]:
        limit = await self.max_array_size()
        arrays: list[dict[str, Any]] = []
        try:
            await self._submit_arrays(folder, task_ids, num_workers, limit, arrays)
        except BaseException:
            # the arrays already accepted run unrecorded: nothing would wait on them, and a
            # resume would run their blocks again beside them
            if arrays:
                await asyncio.shield(self._scancel([a["job_id"] for a in arrays]))
            raise
        logger.info(
            "submitted %s as slurm job(s) %s", folder.manifest.name, [a["job_id"] for a in arrays]
        )
        return {"arrays": arrays, "job_ids": [a["job_id"] for a in arrays]}

    async def _submit_arrays(
        self,
        folder: RunFolder,
        task_ids: list[int],
        num_workers: int,
        limit: int,
        arrays: list[dict[str, Any]],
    ) -> None:
        """One sbatch per ``limit`` tasks, appending each accepted array to ``arrays``."""
        attempt = len(folder.manifest.attempts)
        for start in range(0, len(task_ids), limit):
            chunk = task_ids[start : start + limit]
            offset = chunk[0]
            if chunk != list(range(offset, offset + len(chunk))):
                raise AssertionError("task ids of one attempt are contiguous")
            script = sbatch_script(
                self.config,
                folder,
                self.python(),
                folder.manifest.name,
                len(chunk),
                offset,
                num_workers,
            )
            script_path = folder.join(f"submit-{attempt}-{len(arrays)}.sh")
            await folder.files.write_bytes(script_path, script.encode())
            result = await self.shell.run(["sbatch", "--parsable", script_path])
            if result.returncode:
                before = [a["job_id"] for a in arrays]
                raise ConfigError(
                    f"sbatch refused the job on {self.shell.description}: {result.stderr.strip()}"
                    + (
                        f" (the arrays submitted before it, {before}, are cancelled)"
                        if before
                        else ""
                    )
                )
            job_id = result.stdout.strip().split(";")[0]
            arrays.append({"job_id": job_id, "offset": offset, "size": len(chunk)})

    async def _scancel(self, jobs: list[str]) -> None:
        try:
            await self.shell.run(["scancel", *jobs])
        except Exception as error:  # noqa: BLE001 - best effort; the submit error goes on
            logger.warning("could not cancel the slurm jobs %s just submitted: %s", jobs, error)

    def _arrays(self, folder: RunFolder) -> list[dict[str, Any]]:
        return [
            array for attempt in folder.manifest.attempts for array in attempt.get("arrays", [])
        ]

    async def states(self, folder: RunFolder) -> dict[int, TaskState]:
        arrays = self._arrays(folder)
        if not arrays:
            return {}
        by_job = {a["job_id"]: a for a in arrays}
        jobs = ",".join(by_job)
        states: dict[int, TaskState] = {}

        def put(
            job: str, index: str, state: str, exit_code: str | None, reason: str | None
        ) -> None:
            array = by_job.get(job)
            if array is None or not index.isdigit():
                return
            task_id = array["offset"] + int(index)
            states[task_id] = TaskState(
                _normalize_state(state), exit_code, reason, log=f"slurm-{job}_{index}.log"
            )

        result = await self.shell.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", jobs, "-o", "%i %T %r"]
        )
        for line in result.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and "_" in parts[0]:
                job, index = parts[0].split("_", 1)
                put(job, index, parts[1], None, parts[2] if len(parts) > 2 else None)
        expected = sum(a["size"] for a in arrays)
        if len(states) < expected:
            await self._from_sacct(jobs, put)
        return states

    async def _from_sacct(self, jobs: str, put: Any) -> None:
        result: CommandResult = await self.shell.run(
            ["sacct", "-n", "-X", "-P", "-j", jobs, "-o", "JobID,State,ExitCode"]
        )
        if result.returncode:
            return  # accounting disabled: squeue is all we have
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and "_" in parts[0] and "[" not in parts[0]:
                job, index = parts[0].split("_", 1)
                put(job, index, parts[1], parts[2], None)

    async def cancel(self, folder: RunFolder) -> None:
        jobs = [a["job_id"] for a in self._arrays(folder)]
        if jobs:
            await self.shell.run(["scancel", *jobs])

    async def close(self) -> None:
        await self.shell.close()


class SlurmBackend(RunnerBackend):
    """``job_type='slurm'``: a job array, submitted here or over SSH, watched through the run
    folder. Cancelling the caller's wait cancels the jobs unless ``detach_on_cancel=True``."""

    name = "slurm"
    description = "a slurm job array, submitted here or over SSH (SlurmConfig.host)"
    config_type = SlurmConfig
    tasks_per_worker = 1  # an array element costs ~1.5 s of scheduling: one task each

    def config(self, given: RunnerConfig | None) -> RunnerConfig:
        return SlurmConfig.load() if given is None else super().config(given)

    def tmp_root(self, config: RunnerConfig) -> str:
        assert isinstance(config, SlurmConfig)
        if config.tmp_root is None and config.host is not None:
            raise ConfigError(
                "SlurmConfig.tmp_root is required for runs over SSH: a folder on the "
                "cluster's shared filesystem that every node can read and write"
            )
        return super().tmp_root(config)

    def remote_folders(self, config: RunnerConfig) -> bool:
        return isinstance(config, SlurmConfig) and config.host is not None

    def latency_wait(self, config: RunnerConfig) -> float:
        return config.latency_wait if isinstance(config, SlurmConfig) else 120.0

    def scheduler_poll_interval(self, config: RunnerConfig) -> float:
        return config.scheduler_poll_interval if isinstance(config, SlurmConfig) else 5.0

    async def connect(self, config: RunnerConfig) -> tuple[RunFiles, Launcher]:
        assert isinstance(config, SlurmConfig)
        if config.host is None:
            return LocalFiles(), SlurmLauncher(config, LocalShell())
        session = SshSession(config)
        try:
            await session.call(_noop)  # connect now: a bad host key fails before any upload
        except BaseException:
            await session.close()
            raise
        return ResilientSftpFiles(session), SlurmLauncher(config, session)


async def _noop(connection: Any, sftp: Any) -> None:
    return None


RUNNER_BACKEND = SlurmBackend()
