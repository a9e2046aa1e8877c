"""Leases: a small record that says "this process drives that run (or writes that output)".

A lease is a file created atomically (O_EXCL, or SFTP's exclusive open) holding who took it:
host, pid, the pid's start time (so a reused pid is not mistaken for the holder) and a token.
While held, a background task touches it every ``HEARTBEAT`` seconds. A lease is live when its
holder runs on this host and its process still exists with the same start time, or, for a holder
on another host (whose processes we cannot see), when it was touched within ``STALE_AFTER``
seconds.

A run left running without its driver (``wait=False``, or a wait cancelled with
``detach_on_cancel``) holds the lease in place of the driver: a *run holder* names its run folder
instead of a pid. It is live while a task of the run is pending or running: not once every task
of its latest attempt has a sentinel (when its run folder can be read here), so a new run right
after it finishes is not refused; as its scheduler says, asked on the host that submitted it;
elsewhere while its workers, which touch the lease as they run, touched it within
``STALE_AFTER`` seconds. A resume of that run folder joins the hold instead of being
refused (the resume checks the run's tasks itself).

A driver that submitted a distributed run names its run folder in its record too (``drives``),
before any worker starts: its workers (other sessions, other machines) write on when the driver
is killed, so a driver found dead is not a stale holder while its run is alive, judged as a run
holder is. A resume of that run joins such an orphaned hold.

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
from typing import TYPE_CHECKING, Any

from ..errors import RunLockedError
from .files import LocalFiles, RunFiles

if TYPE_CHECKING:
    from .protocol import RunFolder

HEARTBEAT = 10.0
STALE_AFTER = 60.0
#: Claims tried per stale lease: each one left by a breaker that died moves to the next.
BREAK_SLOTS = 4
#: A contender polls a live breaker's claim this often, for at most BREAK_WAIT_MAX seconds
#: (a break takes a few round trips; a breaker hung longer is left and judged again).
BREAK_POLL = 0.01
BREAK_WAIT_MAX = 10.0
#: The key that makes a lease record a run holder: the run folder whose workers hold it.
RUN_FOLDER = "run_folder"
#: The run folder of the distributed run a live driver's record submitted (its workers may
#: outlive the driver).
DRIVES = "drives_run"


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


def run_holder(holder: dict[str, Any], run_folder: str, **extra: Any) -> dict[str, Any]:
    """The record of a run left running: ``holder``'s token, held by the run folder's workers."""
    return {
        RUN_FOLDER: run_folder,
        "host": holder.get("host"),
        "token": holder.get("token"),
        "since": time.time(),
        **extra,
    }


def holds_run(holder: dict[str, Any], run_folder: str | None) -> bool:
    """Whether ``holder`` is the run holder of ``run_folder`` (paths compared normalised)."""
    held = holder.get(RUN_FOLDER)
    if not isinstance(held, str) or run_folder is None:
        return False
    return os.path.normpath(held) == os.path.normpath(run_folder)


def drives(holder: dict[str, Any], run_folder: str | None) -> bool:
    """Whether ``holder`` is the driver's record of the run in ``run_folder``."""
    held = holder.get(DRIVES)
    if not isinstance(held, str) or run_folder is None:
        return False
    return os.path.normpath(held) == os.path.normpath(run_folder)


def kept_alive_by(holder: dict[str, Any], run_folder: str | None) -> bool:
    """Whether the workers of ``run_folder`` keep ``holder`` live (they touch it as they run)."""
    return holds_run(holder, run_folder) or drives(holder, run_folder)


def driver_alive(holder: dict[str, Any]) -> bool | None:
    """Whether a driver's record names a live process: None for another host's (its
    processes cannot be seen from here)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    started = process_start_time(pid) if pid > 0 else None
    return started is not None and started == holder.get("pid_start")


def holder_text(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
    if RUN_FOLDER in holder:
        return (
            f"the {holder.get('job_type', 'distributed')} run {holder[RUN_FOLDER]}, left running "
            f"by its driver on {holder.get('host')} (since {since})"
        )
    driver = f"pid {holder.get('pid')} on {holder.get('host')} (since {since})"
    if DRIVES in holder and driver_alive(holder) is False:
        return f"the run {holder[DRIVES]}, whose workers go on after its driver ({driver}) died"
    if DRIVES in holder:
        return f"{driver}, driving the run {holder[DRIVES]}"
    return driver


async def holder_alive(files: RunFiles, path: str, holder: dict[str, Any]) -> bool:
    if RUN_FOLDER in holder:
        return await run_holder_alive(files, path, holder)
    alive = driver_alive(holder)
    if alive:
        return True
    if alive is False:
        if DRIVES not in holder:
            return False
        # the driver died; the workers of its run may not have
        orphaned = {RUN_FOLDER: holder[DRIVES], "host": holder.get("host")}
        return await run_holder_alive(files, path, orphaned)
    touched = await files.mtime(path)
    return touched is not None and time.time() - touched < STALE_AFTER


async def run_holder_alive(files: RunFiles, path: str, holder: dict[str, Any]) -> bool:
    """A run left running is alive while a task of it is pending or running. Its run folder,
    where readable here, says when every task ended (sentinels), and on the host that
    submitted it the scheduler is asked (a slurm task pending in the queue touches nothing);
    else its workers' touches tell: alive while touched within ``STALE_AFTER`` seconds."""
    on_submit_host = holder.get("host") == socket.gethostname()
    known = await run_known_alive(str(holder[RUN_FOLDER]), on_submit_host)
    if known is not None:
        return known
    touched = await files.mtime(path)
    return touched is not None and time.time() - touched < STALE_AFTER


async def run_known_alive(path: str, ask_scheduler: bool) -> bool | None:
    """False once every task of the run's latest attempt has a sentinel; else what its
    scheduler says, if asked; None when the folder cannot be read here (on a cluster, gone)."""
    from .protocol import RunFolder  # protocol uses leases: imported when first needed

    try:
        folder = await RunFolder.open(LocalFiles(), path)
        succeeded, failed = await folder.sentinels()
        attempt = latest_attempt(folder.manifest.attempts)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if attempt is None or set(attempt_tasks(attempt)) <= succeeded | failed:
        return False
    return (
        await scheduler_says_alive(folder, str(attempt.get("job_type"))) if ask_scheduler else None
    )


async def scheduler_says_alive(folder: RunFolder, job_type: str) -> bool | None:
    """``Run.alive`` of ``folder``, asked of ``job_type``'s backend with its
    default config; None where that cannot be asked here (an unregistered backend, a config
    that reaches another machine, a failed query)."""
    from .registry import load_runner_backends, runner_backend
    from .run import Run

    try:
        await load_runner_backends()
        backend = runner_backend(job_type)
        config = backend.config(None)
        if not backend.distributed or backend.remote_folders(config):
            return None
        _, launcher = await backend.connect(config)
    except Exception:  # noqa: BLE001 - unknown here: the workers' touches decide
        return None
    try:
        return await Run(folder, launcher, config, backend).alive()
    except Exception:  # noqa: BLE001 - as above
        return None
    finally:
        await launcher.close()


def latest_attempt(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest attempt that has tasks: earlier ones were judged gone when it was submitted,
    and an attempt of a local resume has none (its driver holds the lease)."""
    for attempt in reversed(attempts):
        if len(attempt_tasks(attempt)):
            return attempt
    return None


def attempt_tasks(attempt: dict[str, Any]) -> range:
    start, stop = (int(i) for i in attempt.get("task_ids", (0, 0)))
    return range(start, stop)


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
    """One lease file; ``acquire`` raises what ``refuse(holder)`` returns while a live holder
    has it, and breaks it once that holder is gone.

    ``joins`` names a run folder: a live run holder of that folder is joined (touched while this
    process runs) instead of refused, for a resume of that run, which checks its tasks itself."""

    def __init__(
        self,
        files: RunFiles,
        path: str,
        refuse: Callable[[dict[str, Any]], Exception] | None = None,
        *,
        joins: str | None = None,
        **extra: Any,
    ) -> None:
        self.files = files
        self.path = path
        self.refuse = refuse
        self.joins = joins
        self.joined = False
        self.holder = this_holder(**extra)
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self) -> Lease:
        data = json.dumps(self.holder).encode()
        for _ in range(5):
            if await self._create(data):
                self._heartbeat = asyncio.ensure_future(self._beat())
                return self
            holder = await self.read()
            if holder is None:
                continue  # released between our two calls: try again
            if await holder_alive(self.files, self.path, holder):
                if holds_run(holder, self.joins) or self._joins_orphaned(holder):
                    self.joined = True
                    self._heartbeat = asyncio.ensure_future(self._beat())
                    return self
                raise self._refusal(holder)
            await self._break(holder)
        raise self._refusal(await self.read() or {})

    def _joins_orphaned(self, holder: dict[str, Any]) -> bool:
        """A resume of a run whose driver died while its workers go on joins their hold."""
        return drives(holder, self.joins) and driver_alive(holder) is False

    async def note_run(self, run_folder: str) -> None:
        """Name the distributed run this process is about to submit in its record, so that its
        workers keep the output locked if this process dies before they end (see ``drives``).
        Raises OSError when the record cannot be rewritten."""
        if self.joined:
            return  # the run's hold already
        current = await self.read()
        if current is None or current.get("token") != self.holder["token"]:
            return  # not ours any more
        self.holder[DRIVES] = run_folder
        await self.files.write_bytes(self.path, json.dumps(self.holder).encode())

    async def _create(self, data: bytes) -> bool:
        """The exclusive create, finished even when cancelled meanwhile: a lease file made by a
        create that the cancel interrupted would name this live process, refusing every later
        run of it (a web service, a notebook) until it exits. Such a file is removed."""
        creating = asyncio.ensure_future(self.files.create_exclusive(self.path, data))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if await creating:
                    await self.files.remove(self.path)
            raise

    def _refusal(self, holder: dict[str, Any]) -> Exception:
        if self.refuse is not None:
            return self.refuse(holder)
        return RunLockedError(f"{self.path} is held by {holder_text(holder)}")

    async def read(self) -> dict[str, Any] | None:
        return await read_record(self.files, self.path)

    async def _break(self, stale: dict[str, Any], *, ended: bool = False) -> None:
        """Remove a dead holder's lease under its claim, unless someone replaced it meanwhile.
        Returns without breaking while another live breaker holds the claim: ``acquire``
        then tries the lease again. ``ended``: ``stale`` is a run holder whose run ended, to be
        removed however recently it was touched."""
        data = json.dumps(self.holder).encode()
        for slot in range(BREAK_SLOTS):
            claim = claim_path(self.path, stale, slot)
            if await self.files.create_exclusive(claim, data):
                removed = False
                try:
                    removed = await self._remove_if_stale(stale, ended)
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

    async def _remove_if_stale(self, stale: dict[str, Any], ended: bool = False) -> bool:
        """Holding the claim: only a holder of the same claim could remove the stale lease
        between this read and the removal, so a token match here is still true there."""
        current = await self.read()
        if current is None or current.get("token") != stale.get("token"):
            return False  # broken and taken again meanwhile
        if current.get(RUN_FOLDER) != stale.get(RUN_FOLDER):
            return False  # handed over to a run since it was read
        if not ended and await holder_alive(self.files, self.path, current):
            return False  # e.g. a fresh torn record
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

    async def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    async def hand_over(self, run_folder: str, **extra: Any) -> None:
        """Leave the lease to a run that goes on without this process: the record becomes the
        run holder of ``run_folder`` (same token), kept live by the run's workers. A joined
        hold is that run's already. Raises OSError when the record cannot be rewritten."""
        await self._stop_heartbeat()
        if self.joined:
            return
        current = await self.read()
        if current is None or current.get("token") != self.holder["token"]:
            return  # not ours any more: nothing to hand over
        record = run_holder(self.holder, run_folder, **extra)
        await self.files.write_bytes(self.path, json.dumps(record).encode())

    async def release(self, *, run_ended: bool = False) -> None:
        """Remove the lease while it is this process's hold. A joined run hold stays the run's,
        unless ``run_ended``: the run finished in this process (a resume that completed it)."""
        await self._stop_heartbeat()
        if self.joined:
            if run_ended and self.joins is not None:
                await self.end_run(self.joins)
            return
        current = await self.read()
        if (
            current is not None
            and current.get("token") == self.holder["token"]
            and RUN_FOLDER not in current  # handed over: the run's now
        ):
            await self.files.remove(self.path)

    async def end_run(self, run_folder: str) -> None:
        """Remove the lease if it is the run holder of ``run_folder`` (or the record of its
        dead driver), whose tasks all ended:
        under a claim, as a break, so that a lease another run took meanwhile stays."""
        holder = await self.read()
        if holder is None:
            return
        orphaned = drives(holder, run_folder) and driver_alive(holder) is False
        if holds_run(holder, run_folder) or orphaned:
            await self._break(holder, ended=True)

    async def __aenter__(self) -> Lease:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.release())
