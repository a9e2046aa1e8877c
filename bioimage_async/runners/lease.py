"""Leases: a small record that says "this process drives that run (or writes that output)".

A lease is a file created atomically (O_EXCL, or SFTP's exclusive open) holding who took it:
host, pid, the pid's start time (so a reused pid is not mistaken for the holder) and a token.
While held, a background task touches it every ``HEARTBEAT`` seconds. A lease is live when its
holder runs on this host and its process still exists with the same start time, or, for a holder
on another host (whose processes we cannot see), when it was touched within ``STALE_AFTER``
seconds. A dead holder's lease is broken by renaming it aside first, so two processes breaking
the same stale lease cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from .files import RunFiles

HEARTBEAT = 10.0
STALE_AFTER = 60.0


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
        return None
    if fields and fields[0] in ("Z", "X"):
        return None  # a zombie holds nothing
    return fields[19] if len(fields) > 19 else None


def this_holder(**extra: Any) -> dict[str, Any]:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start_time(pid),
        "token": secrets.token_hex(8),
        "since": time.time(),
        **extra,
    }


def holder_text(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {since})"


async def holder_alive(files: RunFiles, path: str, holder: dict[str, Any]) -> bool:
    if holder.get("host") == socket.gethostname():
        pid = int(holder.get("pid", -1))
        started = process_start_time(pid) if pid > 0 else None
        return started is not None and started == holder.get("pid_start")
    touched = await files.mtime(path)
    return touched is not None and time.time() - touched < STALE_AFTER


class Lease:
    """One lease file; ``acquire`` raises what ``refuse(holder)`` returns while a live process
    holds it, and breaks it once that process is gone."""

    def __init__(
        self,
        files: RunFiles,
        path: str,
        refuse: Callable[[dict[str, Any]], Exception],
        **extra: Any,
    ) -> None:
        self.files = files
        self.path = path
        self.refuse = refuse
        self.holder = this_holder(**extra)
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self) -> Lease:
        data = json.dumps(self.holder).encode()
        for _ in range(5):
            if await self.files.create_exclusive(self.path, data):
                self._heartbeat = asyncio.ensure_future(self._beat())
                return self
            holder = await self.read()
            if holder is None:
                continue  # released between our two calls: try again
            if await holder_alive(self.files, self.path, holder):
                raise self.refuse(holder)
            await self._break(holder)
        raise self.refuse(await self.read() or {})

    async def read(self) -> dict[str, Any] | None:
        try:
            raw = await self.files.read_bytes(self.path)
        except (FileNotFoundError, OSError):
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return {"host": "?", "pid": -1, "since": 0}  # a torn record: its writer died
        return value if isinstance(value, dict) else None

    async def _break(self, stale: dict[str, Any]) -> None:
        """Remove a dead holder's lease, unless someone else replaced it meanwhile."""
        current = await self.read()
        if current is not None and current.get("token") == stale.get("token"):
            await self.files.remove(self.path)

    async def _beat(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, OSError):
            while True:
                await asyncio.sleep(HEARTBEAT)
                await self.files.touch(self.path)

    async def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        current = await self.read()
        if current is not None and current.get("token") == self.holder["token"]:
            await self.files.remove(self.path)

    async def __aenter__(self) -> Lease:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.release())
