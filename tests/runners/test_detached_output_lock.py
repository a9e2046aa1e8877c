"""A run left running without its driver (wait=False, a wait cancelled with detach_on_cancel)
keeps its output locked while its workers write: a second run into the output is refused,
naming the run folder, until the run ends. Real worker processes, held at a gate so that "still
writing" never depends on timing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.runners.files import LocalFiles
from bioimage_async.runners.lease import STALE_AFTER, Lease
from bioimage_async.runners.worker import _touch_if_held, holding_output

from .gated import SHAPE, calls, gated_setup, while_gated


@pytest.fixture
async def gated(tmp_path):
    """The data, the output, a closed gate, the call count file and a map_blocks caller."""
    return await gated_setup(tmp_path, one_through=True, progress=False)


def lock_record(out: ba.Source) -> dict | None:
    path = out.writer_lock_path()
    assert path is not None
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


async def until_ended(run: ba.Run) -> None:
    deadline = time.monotonic() + 120
    while await run.alive():
        assert time.monotonic() < deadline, "the run's workers did not end"
        await asyncio.sleep(0.05)


async def test_a_run_into_the_output_of_a_detached_run_is_refused_until_it_is_waited_for(gated):
    data, out, gate, counts, run = gated
    live = await run("subprocess", wait=False)
    async with while_gated(live, gate):
        assert await live.alive()
        with pytest.raises(ba.RunLockedError) as refused:
            await run("local")
        assert live.tmp_folder in str(refused.value)
        assert "ba.attach(" in str(refused.value)
        assert f"bioimage-async cancel {live.tmp_folder}" in str(refused.value)
    await live.wait()
    assert lock_record(out) is None  # the waiter ended the run's hold
    assert calls(counts) == 16  # the refused run computed nothing
    await out.write(..., np.zeros(SHAPE, np.uint8))
    await run("local")  # accepted at once
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_detached_run_that_ended_unwaited_does_not_lock_its_output(gated):
    data, out, gate, counts, run = gated
    live = await run("subprocess", wait=False)
    async with while_gated(live, gate):
        record = lock_record(out)
        assert record is not None and record["run_folder"] == live.tmp_folder
    await until_ended(live)  # nobody waits: its sentinels say it ended
    await out.write(..., np.zeros(SHAPE, np.uint8))
    await run("local")
    np.testing.assert_array_equal(await out.read(), 255 - data)
    assert calls(counts) == 32


async def test_a_wait_cancelled_with_detach_on_cancel_leaves_the_output_locked(gated, tmp_path):
    data, out, gate, counts, run = gated
    waiting_started = asyncio.Event()
    waiting = asyncio.ensure_future(
        run("subprocess", detach_on_cancel=True, progress=lambda *_: waiting_started.set())
    )
    try:
        await asyncio.wait_for(waiting_started.wait(), 120)  # one block done: it waits
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        [folder] = [str(p) for p in tmp_path.glob("bioimage_async_map_blocks_*")]
        with pytest.raises(ba.RunLockedError, match="left running") as refused:
            await run("local")
        assert folder in str(refused.value)
    finally:
        gate.unlink()
    await (await ba.attach(folder)).wait()
    assert lock_record(out) is None
    await run("local")
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_cancelled_detached_run_unlocks_its_output(gated):
    data, out, gate, counts, run = gated
    live = await run("subprocess", wait=False)
    try:
        with pytest.raises(ba.RunLockedError):
            await run("local")
        await live.cancel()  # returns once no worker is alive
    finally:
        gate.unlink()
    assert lock_record(out) is None
    await run("local")
    np.testing.assert_array_equal(await out.read(), 255 - data)


# ---- the rules, on a run folder written by hand --------------------------------------------
def run_folder(path: Path, tasks: int, ended: dict[int, str], worker_pid: int = -1) -> str:
    """A subprocess run folder whose latest attempt has ``tasks`` tasks in one worker process,
    ``ended`` with these sentinels."""
    (path / "status").mkdir(parents=True)
    worker = {"pid": worker_pid, "tasks": list(range(tasks)), "log": "w.log"}
    attempts = [{"job_type": "subprocess", "task_ids": [0, tasks], "workers": [worker]}]
    manifest = {"name": "t", "num_tasks": tasks, "attempts": attempts}
    (path / "manifest.json").write_text(json.dumps(manifest))
    for task_id, kind in ended.items():
        (path / "status" / f"{task_id}.{kind}").write_text("{}")
    return str(path)


def hold(lock: Path, folder: str, age: float = 0.0, host: str = "elsewhere") -> None:
    """The record a driver on ``host`` leaves when it hands the lease over to the run in
    ``folder`` (on another host, the run's scheduler cannot be asked)."""
    lock.write_text(json.dumps({"run_folder": folder, "host": host, "token": "t"}))
    touched = time.time() - age
    os.utime(lock, (touched, touched))


async def test_a_run_hold_is_live_while_touched_and_some_task_has_no_sentinel(tmp_path):
    lock = tmp_path / "lock.json"
    hold(lock, run_folder(tmp_path / "run", 2, {0: "success"}))
    with pytest.raises(ba.RunLockedError, match="left running"):
        await Lease(LocalFiles(), str(lock)).acquire()


async def test_a_run_hold_whose_tasks_all_ended_is_broken(tmp_path):
    lock = tmp_path / "lock.json"
    hold(lock, run_folder(tmp_path / "run", 2, {0: "success", 1: "failed"}))
    lease = await Lease(LocalFiles(), str(lock)).acquire()
    await lease.release()
    assert not lock.exists()


async def test_a_run_hold_whose_workers_are_gone_is_broken_on_the_host_that_submitted_it(
    tmp_path,
):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    lock = tmp_path / "lock.json"
    folder = run_folder(tmp_path / "run", 2, {0: "success"}, worker_pid=int(gone.stdout))
    hold(lock, folder, host=socket.gethostname())  # touched just now: the scheduler tells
    lease = await Lease(LocalFiles(), str(lock)).acquire()
    await lease.release()
    assert not lock.exists()


async def test_a_run_hold_no_worker_touched_for_a_minute_is_broken(tmp_path):
    lock = tmp_path / "lock.json"
    hold(lock, str(tmp_path / "on-a-cluster"), age=STALE_AFTER + 1)
    lease = await Lease(LocalFiles(), str(lock)).acquire()
    await lease.release()
    assert not lock.exists()


async def test_a_resume_of_the_held_run_joins_its_hold_and_leaves_it(tmp_path):
    lock = tmp_path / "lock.json"
    folder = run_folder(tmp_path / "run", 2, {})
    hold(lock, folder)
    lease = await Lease(LocalFiles(), str(lock), joins=folder + "/").acquire()
    await lease.release()  # the resume failed or was refused: the run's workers may go on
    assert json.loads(lock.read_text())["run_folder"] == folder
    lease = await Lease(LocalFiles(), str(lock), joins=folder).acquire()
    await lease.release(run_ended=True)  # the resume finished the run
    assert not lock.exists()


def test_a_worker_touches_only_its_own_runs_hold(tmp_path):
    lock = tmp_path / "lock.json"
    hold(lock, "/runs/mine", age=1000)
    _touch_if_held(str(lock), "/runs/other")
    assert time.time() - lock.stat().st_mtime > 900
    _touch_if_held(str(lock), "/runs/mine/")
    assert time.time() - lock.stat().st_mtime < 100
    _touch_if_held(str(tmp_path / "released.json"), "/runs/mine")  # gone: nothing to do


def test_a_worker_touches_the_hold_as_soon_as_its_task_starts(tmp_path):
    lock = tmp_path / "lock.json"
    hold(lock, "/runs/mine", age=1000)
    with holding_output(str(lock), "/runs/mine", every=0.01):
        deadline = time.monotonic() + 30
        while time.time() - lock.stat().st_mtime > 900:
            assert time.monotonic() < deadline, "the worker never touched its run's hold"
            time.sleep(0.01)
