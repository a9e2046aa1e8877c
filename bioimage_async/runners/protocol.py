"""The on-disk protocol of a distributed run (subprocess and slurm alike).

A run folder holds::

    manifest.json         name, versions, block layout + its hash, source specs, attempts/jobs
    payload.pkl           the cloudpickled (kernel, grid): the per-block function travels by value
    tasks/<id>.json       the block ids of one task, as groups processed in order
    progress/<id>.log     one fixed-width line per finished block: the authority for what is done
    status/<id>.success   written last by a task that finished every block
    status/<id>.failed    written by a task that finished with failed blocks (ids + traceback)
    logs/                 worker and scheduler output

Polling lists ``status/`` and ``progress/`` once each (sizes tell the blocks done, since every
progress line has the same width): never one stat per block.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import json
import os
import platform
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import numpy as np

from .._version import __version__
from ..blocking.grid import BlockGrid
from ..errors import ConfigError, PayloadMismatchError, RunFolderNotFoundError, RunLockedError
from ..pipeline.task import BlockKernel, BlockTask
from .files import RunFiles
from .lease import Lease, holder_text

PROGRESS_LINE = 13  # "%012d\n"
MANIFEST = "manifest.json"
PAYLOAD = "payload.pkl"


def progress_line(block_id: int) -> bytes:
    return b"%012d\n" % block_id


def parse_progress(raw: bytes) -> np.ndarray:
    """The block ids of a progress log's whole records: lines of exactly 12 ASCII digits.

    A record torn by a crash mid-append, or zeros left by a power cut, is skipped (its block is
    redone). Cutting the log to a multiple of 13 bytes instead misread everything after a torn
    record once a re-run appended to it (a never-written block read as block 0), and int()
    of a zero-filled line made a resume fail.
    """
    ids = [int(line) for line in raw.split(b"\n") if len(line) == 12 and line.isdigit()]
    return np.array(ids, dtype=np.int64)


def id_ranges(ids: Iterable[int], sep: str = ", ") -> str:
    """Sorted block ids as ranges, '3-7, 12' (a list of a million ids would flood a log);
    ``block_ids=`` takes the ids these ranges expand to, and the CLI's --block-ids the text
    joined with ``sep=","``."""
    values = sorted(int(i) for i in ids)
    parts: list[str] = []
    first = 0
    while first < len(values):
        last = first
        while last + 1 < len(values) and values[last + 1] == values[last] + 1:
            last += 1
        start, stop = values[first], values[last]
        parts.append(str(start) if start == stop else f"{start}-{stop}")
        first = last + 1
    return sep.join(parts)


def python_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def layout_of(task: BlockTask) -> dict[str, Any]:
    grid = task.grid
    return {
        "shape": list(grid.shape),
        "block_shape": list(grid.block_shape),
        "halo": list(grid.halo),
        "num_blocks": grid.num_blocks,
        "kernel": task.kernel.describe(),
        "casting": task.casting,
    }


def layout_hash(layout: dict[str, Any], sources: dict[str, Any]) -> str:
    text = json.dumps({"layout": layout, "sources": sources}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_into_tasks(
    groups: Iterable[list[int]], n_groups: int, num_tasks: int
) -> list[list[list[int]]]:
    """Cut the ordered groups into ``num_tasks`` contiguous tasks of nearly equal size."""
    num_tasks = max(1, min(num_tasks, n_groups))
    tasks: list[list[list[int]]] = [[] for _ in range(num_tasks)]
    base, extra = divmod(n_groups, num_tasks)
    iterator = iter(groups)
    for index in range(num_tasks):
        for _ in range(base + (1 if index < extra else 0)):
            tasks[index].append(next(iterator))
    return [t for t in tasks if t]


@dataclass
class Manifest:
    """The JSON manifest of a run folder."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def num_tasks(self) -> int:
        return int(self.data.get("num_tasks", 0))

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return list(self.data.get("attempts", []))

    def requested_ids(self) -> np.ndarray:
        ids = self.data.get("block_ids")
        if ids is None:
            return np.arange(int(self.data["layout"]["num_blocks"]), dtype=np.int64)
        return np.asarray(ids, dtype=np.int64)


class RunFolder:
    """A run's temp folder, through a RunFiles backend (local filesystem or SFTP)."""

    def __init__(self, files: RunFiles, path: str, manifest: Manifest) -> None:
        self.files = files
        self.path = path.rstrip("/")
        self.manifest = manifest

    def join(self, *parts: str) -> str:
        return "/".join([self.path, *parts])

    # ---- creation and reopening -----------------------------------------------------------
    @classmethod
    async def create(
        cls,
        files: RunFiles,
        tmp_root: str,
        task: BlockTask,
        block_ids: Sequence[int] | None,
        job_type: str,
        *,
        retries: int = 0,
        block_timeout: float | None = None,
    ) -> RunFolder:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = f"{tmp_root.rstrip('/')}/bioimage_async_{task.name}_{stamp}_{secrets.token_hex(3)}"
        await files.makedirs(tmp_root)
        await files.mkdir(path)
        await asyncio.gather(
            *(files.mkdir(f"{path}/{sub}") for sub in ("tasks", "progress", "status", "logs"))
        )
        sources = {k: v.to_spec().to_json() for k, v in task.sources().items()}
        layout = layout_of(task)
        payload = cloudpickle.dumps(
            {
                "kernel": task.kernel,
                "grid": task.grid,
                "casting": task.casting,
                "retries": retries,
                "block_timeout": block_timeout,
            }
        )
        manifest = Manifest(
            {
                "format": 1,
                "name": task.name,
                "job_type": job_type,
                "created": _dt.datetime.now().isoformat(timespec="seconds"),
                "package_version": __version__,
                "python": python_minor(),
                "python_full": platform.python_version(),
                "numpy": np.__version__,
                "layout": layout,
                "layout_hash": layout_hash(layout, sources),
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
                "sources": sources,
                "block_ids": None if block_ids is None else [int(i) for i in block_ids],
                "num_tasks": 0,
                "attempts": [],
            }
        )
        folder = cls(files, path, manifest)
        try:
            await files.write_bytes(f"{path}/{PAYLOAD}", payload)
            await folder.save_manifest()
        except OSError as err:
            await files.rmtree(path)
            raise ConfigError(
                f"cannot write the run folder {path} under tmp_root={tmp_root!r}: "
                f"{err.strerror or err}. Set RunnerConfig(tmp_root=...) to a folder with free "
                "space that you can write"
            ) from err
        return folder

    @classmethod
    async def open(cls, files: RunFiles, path: str) -> RunFolder:
        path = path.rstrip("/")
        if not await files.exists(f"{path}/{MANIFEST}"):
            raise RunFolderNotFoundError(
                f"{path} is not a bioimage_async run folder (no {MANIFEST}); pass the tmp_folder "
                "of a RunnerError or a Run handle"
            )
        manifest = Manifest(json.loads(await files.read_bytes(f"{path}/{MANIFEST}")))
        return cls(files, path, manifest)

    async def save_manifest(self) -> None:
        data = json.dumps(self.manifest.data, indent=1).encode()
        await self.files.write_bytes(self.join(MANIFEST), data)

    async def check_payload(self, task: BlockTask | None = None) -> None:
        """The payload is the one the manifest describes; warn-free resumes need the same layout."""
        payload = await self.files.read_bytes(self.join(PAYLOAD))
        if hashlib.sha256(payload).hexdigest() != self.manifest.data["payload_sha256"]:
            raise PayloadMismatchError(
                f"the payload in {self.path} does not match its manifest (edited or truncated); "
                "it cannot be resumed safely. Start a new run (block_ids= the missing blocks).",
                tmp_folder=self.path,
            )
        if task is not None:
            sources = {k: v.to_spec().to_json() for k, v in task.sources().items()}
            new_hash = layout_hash(layout_of(task), sources)
            if new_hash != self.manifest.data["layout_hash"]:
                raise PayloadMismatchError(
                    f"resume_from={self.path!r} was a run with another block layout, another "
                    f"function (its code, defaults or closure values differ) or other sources "
                    f"({self.manifest.data['layout']}); resume finishes that run, so call it "
                    "with the original arguments. If you changed the function on purpose and "
                    "the finished blocks stay valid, run the rest as a new run: "
                    f"block_ids=ba.sync.missing_blocks({self.path!r}) (await "
                    "ba.missing_blocks(...) in async code).",
                    tmp_folder=self.path,
                )

    # ---- tasks and attempts ---------------------------------------------------------------
    async def add_tasks(self, tasks: list[list[list[int]]]) -> list[int]:
        first = self.manifest.num_tasks
        ids = list(range(first, first + len(tasks)))
        await asyncio.gather(
            *(  # concurrent: one round trip, not one per task, over SFTP
                self.files.write_bytes(
                    self.join("tasks", f"{task_id}.json"), json.dumps(groups).encode()
                )
                for task_id, groups in zip(ids, tasks)
            )
        )
        self.manifest.data["num_tasks"] = first + len(tasks)
        await self.save_manifest()
        return ids

    async def record_attempt(
        self, job_type: str, task_ids: list[int], jobs: dict[str, Any]
    ) -> None:
        self.manifest.data["attempts"].append(
            {
                "job_type": job_type,
                "task_ids": [task_ids[0], task_ids[-1] + 1] if task_ids else [0, 0],
                "submitted": _dt.datetime.now().isoformat(timespec="seconds"),
                **jobs,
            }
        )
        await self.save_manifest()

    async def task_blocks(self, task_id: int) -> list[int]:
        groups = json.loads(await self.files.read_bytes(self.join("tasks", f"{task_id}.json")))
        return [i for group in groups for i in group]

    # ---- observing ------------------------------------------------------------------------
    async def sentinels(self) -> tuple[set[int], set[int]]:
        """(succeeded, failed) task ids: one listing of ``status/``."""
        succeeded, failed = set(), set()
        for name in await self.files.list_sizes(self.join("status")):
            stem, _, kind = name.partition(".")
            if stem.isdigit() and kind == "success":
                succeeded.add(int(stem))
            elif stem.isdigit() and kind == "failed":
                failed.add(int(stem))
        return succeeded, failed

    async def blocks_done_count(self) -> int:
        """Blocks with a done record, from one listing of ``progress/`` (sizes / line width)."""
        sizes = await self.files.list_sizes(self.join("progress"))
        return sum(size // PROGRESS_LINE for name, size in sizes.items() if name.endswith(".log"))

    async def done_blocks(self) -> np.ndarray:
        """Every block id with a done record (reads the progress logs: end of run only)."""
        sizes = await self.files.list_sizes(self.join("progress"))
        found: list[np.ndarray] = []
        for name, size in sizes.items():
            if not name.endswith(".log") or size < PROGRESS_LINE:
                continue
            raw = await self.files.read_bytes(self.join("progress", name))
            found.append(parse_progress(raw))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    async def missing_blocks(self) -> list[int]:
        requested = self.manifest.requested_ids()
        done = await self.done_blocks()
        return np.setdiff1d(requested, done).astype(int).tolist()

    async def summary(self, task_id: int) -> dict[str, Any] | None:
        """A finished task's summary (its .success or .failed sentinel), or None."""
        for kind in ("success", "failed"):
            try:
                raw = await self.files.read_bytes(self.join("status", f"{task_id}.{kind}"))
            except (FileNotFoundError, OSError):
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
        return None

    async def failure(self, task_id: int) -> dict[str, Any] | None:
        try:
            raw = await self.files.read_bytes(self.join("status", f"{task_id}.failed"))
        except (FileNotFoundError, OSError):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"error": raw.decode(errors="replace")}

    async def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            raw = await self.files.read_bytes(self.join("logs", name))
        except (FileNotFoundError, OSError):
            return ""
        return "\n".join(raw.decode(errors="replace").rstrip().splitlines()[-lines:])

    async def remove(self) -> None:
        await self.files.rmtree(self.path)

    def lease(self) -> Lease:
        """The lock of this folder: one live process drives the run at a time."""

        def refuse(holder: dict[str, Any]) -> Exception:
            return RunLockedError(
                f"the run {self.path} is being driven by {holder_text(holder)}; a second "
                "driver would run its blocks twice. Wait for it (ba.attach(...) watches without "
                "driving), or stop that process; its lock is taken over once it is gone."
            )

        return Lease(self.files, self.join("lock.json"), refuse)


@dataclass(frozen=True)
class Payload:
    """What a worker needs besides the sources: the kernel, the grid and how blocks run."""

    kernel: BlockKernel
    grid: BlockGrid
    casting: str = "checked"
    retries: int = 0
    block_timeout: float | None = None


def load_payload(path: str) -> Payload:
    with open(os.path.join(path, PAYLOAD), "rb") as handle:
        payload = cloudpickle.load(handle)
    return Payload(
        payload["kernel"],
        payload["grid"],
        payload.get("casting", "checked"),
        int(payload.get("retries", 0)),
        payload.get("block_timeout"),
    )
