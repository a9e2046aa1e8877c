"""The on-disk protocol of a distributed run (subprocess and slurm alike).

A run folder holds::

    manifest.json         name, versions, block layout + hashes by part, source specs, attempts
    payload.pkl           the cloudpickled (kernel, grid): the per-block function travels by value
    tasks/<id>.json       the block ids of one task, as groups processed in order
    progress/<id>.log     one line per finished block: the authority for what is done
    status/<id>.success   written last by a task that finished every block
    status/<id>.failed    written by a task that finished with failed blocks (ids + traceback)
    logs/                 worker and scheduler output

Polling lists ``status/`` and ``progress/`` once each (sizes tell the blocks done, since a
run's progress lines have one width: 13 bytes, or 21 for grids with ids from 10**12): never one
stat per block.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
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

PROGRESS_LINE = 13  # "%012d\n": ids below WIDE_IDS, as every run folder before them has
WIDE_LINE = 21  # "w%019d\n": ids from WIDE_IDS (a 10**6-cubed volume in 64^3 blocks has 3.8e12)
WIDE_IDS = 10**12
MANIFEST = "manifest.json"
PAYLOAD = "payload.pkl"
#: written by ``Run.cancel``: a run that stopped is then known to have been cancelled, not killed
CANCELLED = "cancelled.json"


def progress_line(block_id: int) -> bytes:
    """The record of a finished block. Wide ids carry a 'w' so that a wide record torn by a
    crash (then ended by the next attempt's newline) can never read as a 12-digit id."""
    if block_id < WIDE_IDS:
        return b"%012d\n" % block_id
    return b"w%019d\n" % block_id


def _record_id(line: bytes) -> int | None:
    """The id of one whole record (12 digits, or 'w' and 19 digits), else None."""
    if len(line) == PROGRESS_LINE - 1 and line.isdigit():
        return int(line)
    if len(line) == WIDE_LINE - 1 and line.startswith(b"w") and line[1:].isdigit():
        value = int(line[1:])
        return value if value < 2**63 else None  # beyond int64: not a block id
    return None


def parse_progress(raw: bytes) -> np.ndarray:
    """The block ids of a progress log's whole records: lines of exactly 12 ASCII digits, or
    'w' and 19 digits.

    A record torn by a crash mid-append, or zeros left by a power cut, is skipped (its block is
    redone). Cutting the log to a multiple of 13 bytes instead misread everything after a torn
    record once a re-run appended to it (a never-written block read as block 0), and int()
    of a zero-filled line made a resume fail.
    """
    ids = [i for i in map(_record_id, raw.split(b"\n")) if i is not None]
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
    """The whole call's hash, as manifests before ``part_hashes`` stored it (kept for them)."""
    return _digest({"layout": layout, "sources": sources})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


#: Source spec params about how a handle was opened, not which data it holds: a resume may
#: reopen its input read-only (``ba.open_source``) where the first run had it writable.
HANDLE_PARAMS = frozenset({"writable", "mode", "read_only", "lock_path", "cache"})
#: Storage params about who reads (credentials), not where the data is.
ACCESS_PARAMS = frozenset({"profile", "anonymous"})
#: What a resume must match, in the order a refusal names them.
PARTS = ("layout", "function", "input", "output", "mask")


def data_spec(spec: Any) -> Any:
    """A source spec without its handle params, in it and in the specs it nests (views,
    wrappers); what identifies the data (paths, driver, dtype, transforms, regions) stays."""
    if isinstance(spec, list):
        return [data_spec(item) for item in spec]
    if not isinstance(spec, dict):
        return spec
    if "kind" in spec and isinstance(spec.get("params"), dict):
        params = {k: data_spec(v) for k, v in spec["params"].items() if k not in HANDLE_PARAMS}
        if isinstance(params.get("storage"), dict):
            params["storage"] = {
                k: v for k, v in params["storage"].items() if k not in ACCESS_PARAMS
            }
        return {**spec, "params": params}
    return {k: data_spec(v) for k, v in spec.items()}


def run_parts(layout: dict[str, Any], sources: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run that a resume must match (see PARTS), as plain JSON values."""
    return {
        "layout": {k: v for k, v in layout.items() if k not in ("kernel", "casting")},
        "function": {"kernel": layout.get("kernel"), "casting": layout.get("casting")},
        **{role: data_spec(sources.get(role)) for role in ("input", "output", "mask")},
    }


def hash_parts(parts: dict[str, Any]) -> dict[str, str]:
    return {name: _digest(value) for name, value in parts.items()}


def _part_difference(name: str, before: Any, now: Any) -> str:
    """One differing part, with both values (cut short: a spec is long, its place first)."""
    what = {
        "layout": "another block layout",
        "function": "another function (its code, default arguments or closure values) or casting",
    }.get(name, f"another {name}")
    return f"{what}: the run had {_short_json(before)}, this call has {_short_json(now)}"


def _short_json(value: Any) -> str:
    return "none" if value is None else json.dumps(value, sort_keys=True)[:400]


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

    @property
    def num_blocks(self) -> int:
        return int(self.data["layout"]["num_blocks"])

    def requested_count(self) -> int:
        """How many blocks the run asked for, without listing them (a full grid of a 100 TB
        volume in 64^3 blocks has 4e8 ids: 3 GB as an id array)."""
        ids = self.data.get("block_ids")
        return self.num_blocks if ids is None else len(ids)

    @functools.cached_property
    def record_width(self) -> int:
        """The width of this run's progress records, for counting them from log sizes: wide
        once any requested id is (the ids never change; computed once, not on every poll)."""
        ids = self.data.get("block_ids")
        num_blocks = int(self.data["layout"]["num_blocks"])
        largest = num_blocks - 1 if ids is None else max(ids, default=-1)
        return PROGRESS_LINE if largest < WIDE_IDS else WIDE_LINE


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
                "part_hashes": hash_parts(run_parts(layout, sources)),
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
            await self._check_same_call(task)

    async def _check_same_call(self, task: BlockTask) -> None:
        """Refuse a resume whose call differs from the run's, naming each differing part.
        Manifests without ``part_hashes`` (older runs) are compared through the layout and
        source specs they store, which those hashes were made of."""
        sources = {k: v.to_spec().to_json() for k, v in task.sources().items()}
        now = run_parts(layout_of(task), sources)
        stored = self.manifest.data.get("part_hashes")
        before = run_parts(self.manifest.data["layout"], self.manifest.data.get("sources", {}))
        if not isinstance(stored, dict):
            stored = hash_parts(before)
        differ = [name for name in PARTS if stored.get(name) != _digest(now[name])]
        if not differ:
            return
        details = "; ".join(_part_difference(n, before.get(n), now[n]) for n in differ)
        raise PayloadMismatchError(
            f"resume_from={self.path!r} was a run with {details}. Resume finishes that run, so "
            "call it with the original arguments. If you changed the call on purpose and "
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

    async def record_cancel(self) -> None:
        """Note that the run was cancelled on purpose (``status`` tells it from a crash)."""
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        await self.files.write_bytes(self.join(CANCELLED), json.dumps({"at": stamp}).encode())

    async def cancelled_at(self) -> str | None:
        """When the run was last cancelled, or None (never, or resumed since)."""
        try:
            return str(json.loads(await self.files.read_bytes(self.join(CANCELLED)))["at"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    async def clear_cancel(self) -> None:
        """A resumed run is running again: its cancel no longer describes it."""
        await self.files.remove(self.join(CANCELLED))  # no file: nothing to do

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
        """Blocks with a done record, from one listing of ``progress/`` (sizes / line width).

        Exact when every requested id has one record width. A run whose ids straddle 10**12
        divides by the wide width, so its narrow records count 13/21 each: an undercount for
        progress bars, never a count above the total (``done_blocks`` is exact)."""
        sizes = await self.files.list_sizes(self.join("progress"))
        width = self.manifest.record_width
        return sum(size // width for name, size in sizes.items() if name.endswith(".log"))

    async def done_blocks(self) -> np.ndarray:
        """Every block id with a done record (reads the progress logs: end of run only)."""
        sizes = await self.files.list_sizes(self.join("progress"))
        found: list[np.ndarray] = []
        for name, size in sizes.items():
            if not name.endswith(".log") or size < PROGRESS_LINE:
                continue  # shorter than the narrowest record: no whole record
            raw = await self.files.read_bytes(self.join("progress", name))
            found.append(parse_progress(raw))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    async def missing_blocks(self) -> list[int]:
        """The requested blocks with no done record, sorted.

        One flag per requested block, set log by log: 1 byte a block at the peak, where an id
        array of the request and one of every record, sorted together, took 16 or more (a full
        grid of a 100 TB volume in 64^3 blocks has 4e8 ids)."""
        listed = self.manifest.data.get("block_ids")
        requested = None if listed is None else np.unique(np.asarray(listed, dtype=np.int64))
        if requested is not None and requested.size == 0:
            return []
        done = np.zeros(self.manifest.num_blocks if requested is None else requested.size, bool)
        sizes = await self.files.list_sizes(self.join("progress"))
        for name, size in sizes.items():
            if not name.endswith(".log") or size < PROGRESS_LINE:
                continue
            ids = parse_progress(await self.files.read_bytes(self.join("progress", name)))
            if requested is None:
                done[ids[(ids >= 0) & (ids < done.size)]] = True
            else:
                where = np.minimum(np.searchsorted(requested, ids), max(requested.size - 1, 0))
                done[where[requested[where] == ids]] = True
        missing = np.flatnonzero(~done)
        return (missing if requested is None else requested[missing]).tolist()

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
