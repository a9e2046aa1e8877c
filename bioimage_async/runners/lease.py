"""Leases: a small record that says "this process drives that run (or writes that output)".

A lease is a file created atomically (O_EXCL, or SFTP's exclusive open) holding who took it:
host, pid, the pid's start time (so a reused pid is not mistaken for the holder) and a token.
While held, a background task touches it every ``HEARTBEAT`` seconds. A lease is live when its
holder runs on this host and its process still exists with the same start time, or, for a holder
on another host (whose processes we cannot see), when it was touched within ``STALE_AFTER``
seconds.

A dead holder's lease is broken under a claim: a small file named after the stale lease's token,
created exclusively, so one breaker at a time reads the lease and removes it if it is still the
stale one. Without the claim, a breaker that had read the stale lease could remove the live
lease another breaker had just created in its place (two holders). Run folders may live on SFTP,
whose only atomic primitive here is the exclusive create; a breaker that dies holding a claim
(a window of milliseconds) is seen dead like a holder, and the next claim slot is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
#: Claims tried per stale lease: each one left by a breaker that died moves to the next.
BREAK_SLOTS = 4
#: A contender polls a live breaker's claim this often, for at most BREAK_WAIT_MAX seconds
#: (a break takes a few round trips; a breaker hung longer is left and judged again).
BREAK_POLL = 0.01
BREAK_WAIT_MAX = 10.0


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


async def read_record(files: RunFiles, path: str) -> dict[str, Any] | None:
    """A lease or claim record; None when there is none. A torn record (its writer died, or
    is between its exclusive create and its write) has no token and is judged by its age."""
    try:
        raw = await files.read_bytes(path)
    except (FileNotFoundError, OSError):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"host": "?", "pid": -1, "since": 0}
    return value if isinstance(value, dict) else None


def claim_path(path: str, stale: dict[str, Any], slot: int) -> str:
    """The claim that breakers of the lease ``stale`` take in turn (a name safe for any token)."""
    key = hashlib.sha256(str(stale.get("token")).encode()).hexdigest()[:16]
    return f"{path}.break-{key}-{slot}"


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
        return await read_record(self.files, self.path)

    async def _break(self, stale: dict[str, Any]) -> None:
        """Remove a dead holder's lease under its claim, unless someone replaced it meanwhile.
        Returns without breaking while another live breaker holds the claim: ``acquire``
        then tries the lease again."""
        data = json.dumps(self.holder).encode()
        for slot in range(BREAK_SLOTS):
            claim = claim_path(self.path, stale, slot)
            if await self.files.create_exclusive(claim, data):
                removed = False
                try:
                    removed = await self._remove_if_stale(stale)
                finally:
                    await self._remove_claims(stale, 0 if removed else slot, slot)
                return
            claimer = await read_record(self.files, claim)
            if claimer is None:
                return  # its breaker just finished: the lease may be free now
            if await holder_alive(self.files, claim, claimer):
                await self._wait_until_gone(claim)  # it is breaking the lease right now
                return

    async def _wait_until_gone(self, claim: str) -> None:
        """Wait (polling, at most ``BREAK_WAIT_MAX`` s) for a live breaker to finish: ``acquire``
        then finds the lease it took, or none, instead of refusing in the name of the dead."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BREAK_WAIT_MAX
        while await self.files.exists(claim) and loop.time() < deadline:
            await asyncio.sleep(BREAK_POLL)

    async def _remove_if_stale(self, stale: dict[str, Any]) -> bool:
        """Holding the claim: only a holder of the same claim could remove the stale lease
        between this read and the removal, so a token match here is still true there."""
        current = await self.read()
        if current is None or current.get("token") != stale.get("token"):
            return False  # broken and taken again meanwhile
        if await holder_alive(self.files, self.path, current):  # e.g. a fresh torn record
            return False
        await self.files.remove(self.path)
        return True

    async def _remove_claims(self, stale: dict[str, Any], first: int, last: int) -> None:
        """Claims ``first``..``last`` (ours is ``last``). Those of dead breakers before us go
        only once the stale lease is gone (its token never comes back); while it stays they
        keep breakers of it in one slot at a time."""
        for index in range(last, first - 1, -1):
            await self.files.remove(claim_path(self.path, stale, index))

    async def _beat(self) -> None:
        """Touch the lease until cancelled; a failed touch (a network hiccup over SFTP) must not
        end the heartbeat, or the lease would look stale to other hosts within a minute."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(HEARTBEAT)
                with contextlib.suppress(OSError):
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
