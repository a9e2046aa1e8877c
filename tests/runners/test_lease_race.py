"""Contenders breaking one stale lease: at most one of them ever holds it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time

import pytest

from bioimage_async.runners.files import LocalFiles
from bioimage_async.runners.lease import Lease

#: What a SIGKILLed driver leaves behind: a lock naming a pid that is gone.
STALE = {"host": socket.gethostname(), "pid": 999999, "pid_start": "1", "token": "dead", "since": 0}


class Locked(RuntimeError):
    pass


def refuse(holder: dict) -> Exception:
    return Locked(f"locked by pid {holder.get('pid')}")


def write_stale_lock(path: str) -> None:
    with open(path, "w") as handle:
        json.dump(STALE, handle)


class LateRemover(LocalFiles):
    """Local files whose removal of the lock waits for ``gate`` (at most ``limit`` seconds):
    the slow breaker of a race, removing after another contender broke and retook the lock."""

    def __init__(self, lock: str, gate: asyncio.Event, limit: float) -> None:
        self.lock, self.gate, self.limit = lock, gate, limit

    async def remove(self, path: str) -> None:
        if path == self.lock:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.wait(), self.limit)
        await super().remove(path)


async def holders(leases: list[Lease], attempts: list) -> list[Lease]:
    """The leases whose acquire succeeded; the others must have been refused."""
    results = await asyncio.gather(*attempts, return_exceptions=True)
    for result in results:
        if not isinstance(result, Lease | Locked):
            raise result
    won = [r for r in results if isinstance(r, Lease)]
    for lease in won:
        if lease._heartbeat is not None:
            lease._heartbeat.cancel()
    return won


async def test_a_slow_breaker_never_removes_the_lease_another_breaker_took(tmp_path):
    """The slow breaker read the stale lock, then removes it only after the fast one broke it
    and took the lease: a read-compare-remove deleted the fast one's live lock."""
    path = str(tmp_path / "lock.json")
    write_stale_lock(path)
    taken = asyncio.Event()
    slow = Lease(LateRemover(path, taken, limit=0.5), path, refuse)
    fast = Lease(LocalFiles(), path, refuse)

    async def fast_acquire() -> Lease:
        await asyncio.sleep(0.05)  # the slow one reads the stale lock first
        lease = await fast.acquire()
        taken.set()
        return lease

    won = await holders([slow, fast], [slow.acquire(), fast_acquire()])
    assert len(won) == 1, "both contenders hold the lease"
    with open(path) as handle:
        assert json.load(handle)["token"] == won[0].holder["token"]


async def test_at_most_one_of_three_contenders_holds_a_broken_stale_lease(tmp_path):
    """Many real races (the file calls run in threads): the old break gave two holders in
    about a third of the trials."""
    path = str(tmp_path / "lock.json")
    counts: dict[int, int] = {}
    for _ in range(100):
        write_stale_lock(path)
        leases = [Lease(LocalFiles(), path, refuse) for _ in range(3)]
        won = await holders(leases, [lease.acquire() for lease in leases])
        counts[len(won)] = counts.get(len(won), 0) + 1
        os.unlink(path)
    assert counts == {1: 100}
    assert os.listdir(tmp_path) == []  # no claim is left behind


async def test_a_claim_left_by_a_dead_breaker_does_not_block_the_lease(tmp_path):
    from bioimage_async.runners.lease import claim_path

    path = str(tmp_path / "lock.json")
    write_stale_lock(path)
    with open(claim_path(path, STALE, 0), "w") as handle:
        json.dump({**STALE, "pid": 999998, "token": "breaker"}, handle)  # died mid-break
    lease = await Lease(LocalFiles(), path, refuse).acquire()
    await lease.release()
    assert os.listdir(tmp_path) == []


async def test_a_lock_being_written_is_live_and_not_broken(tmp_path):
    """Between its exclusive create and its write a lock is empty: its age says it is live."""
    path = tmp_path / "lock.json"
    path.write_bytes(b"")
    with pytest.raises(Locked):
        await Lease(LocalFiles(), str(path), refuse).acquire()
    assert path.exists()


class SlowCreate(LocalFiles):
    """Local files whose exclusive create lands after ``started`` is set and a pause: a cancel
    arrives while the create runs in its thread."""

    def __init__(self, started: asyncio.Event) -> None:
        self.started = started

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        def create() -> bool:  # in a thread, as the real one: a cancel does not stop it
            time.sleep(0.2)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            os.write(fd, data)
            os.close(fd)
            return True

        self.started.set()
        return await asyncio.get_running_loop().run_in_executor(None, create)


async def test_a_cancel_during_the_create_leaves_no_lease_naming_this_live_process(tmp_path):
    """The file the interrupted create made named this (live) process: every later run of it
    was refused until it exited."""
    lock = str(tmp_path / "lock.json")
    started = asyncio.Event()
    taking = asyncio.ensure_future(Lease(SlowCreate(started), lock, refuse).acquire())
    await started.wait()
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    await asyncio.sleep(0.5)  # the create's thread has finished by now
    assert not os.path.exists(lock)
    lease = await Lease(LocalFiles(), lock, refuse).acquire()  # free for the next run
    await lease.release()
