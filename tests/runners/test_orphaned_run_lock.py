"""A distributed run whose driver is killed (an OOM kill, a closed terminal) goes on: its
workers run in their own sessions (or on the cluster). Its output stays locked while they
write, a resume joins them, and the lock goes once they ended. Real driver and worker
processes, the workers held at a gate so that "still writing" never depends on timing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import bioimage_async as ba

from .gated import BLOCK, SHAPE, calls, gated_setup
from .test_detached_output_lock import lock_record

REPO = Path(__file__).resolve().parents[2]


def start_driver(tmp_path: Path) -> subprocess.Popen:
    """A driver process running the gated map_blocks with job_type='subprocess', waiting (the
    function of ``gated_setup(one_through=True)``, so that a resume may finish its run)."""
    script = textwrap.dedent(
        f"""
        import bioimage_async as ba
        from tests.runners.gated import gated_invert
        fn = gated_invert({str(tmp_path / "gate")!r}, {str(tmp_path / "calls.txt")!r},
                          {str(tmp_path / "fail_locally")!r}, {str(tmp_path / "one_through")!r})
        ba.sync.map_blocks(
            fn,
            ba.sync.open_source({str(tmp_path / "in.zarr")!r}),
            ba.sync.open_source({str(tmp_path / "out.zarr")!r}, mode="r+"),
            block_shape={BLOCK!r},
            job_type="subprocess",
            num_workers=2,
            job_config=ba.RunnerConfig(tmp_root={str(tmp_path)!r}, poll_interval=0.05),
            progress=False,
        )
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO)


def run_ended(folder: str) -> bool:
    """Whether every task of the run's latest attempt left a sentinel."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    attempts = manifest.get("attempts") or []
    if not attempts:
        return False
    start, stop = attempts[-1]["task_ids"]
    ended = {p.stem for p in (Path(folder) / "status").glob("*.*")}
    return all(str(task) in ended for task in range(start, stop))


async def until(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_the_output_of_a_run_whose_driver_was_killed_stays_locked_while_it_writes(tmp_path):
    data, out, gate, counts, run = await gated_setup(tmp_path, one_through=True, progress=False)
    await out.write(..., np.zeros(SHAPE, np.uint8))
    driver = start_driver(tmp_path)
    try:
        # a worker passed the gate: the run's tasks are running
        await until((tmp_path / "one_through").exists, "no worker started")
        [folder] = [str(p) for p in tmp_path.glob("bioimage_async_map_blocks_*")]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        with pytest.raises(ba.RunLockedError) as refused:
            await run("local")  # the killed driver's workers still write into it
        assert folder in str(refused.value) and "driver" in str(refused.value)
        record = lock_record(out)  # the driver named its run before any worker started
        assert record is not None and record["pid"] == driver.pid
        assert record["drives_run"] == folder
        assert f"bioimage-async cancel {folder}" in str(refused.value)
        # a resume joins the orphaned run (attaching to its live workers) and finishes it
        resumed = asyncio.ensure_future(run("subprocess", resume_from=folder))
        await asyncio.sleep(1.0)
        assert not resumed.done()
    finally:
        gate.unlink()
        if driver.poll() is None:
            driver.kill()
    await asyncio.wait_for(resumed, 120)
    np.testing.assert_array_equal(await out.read(), 255 - data)
    assert calls(counts) == 16  # each block computed once: nothing ran twice
    assert lock_record(out) is None  # the run ended: its output is free
    await run("local")  # accepted at once
    assert calls(counts) == 32


async def test_a_dead_drivers_lock_is_broken_once_its_run_ended(tmp_path):
    data, out, gate, counts, run = await gated_setup(tmp_path, one_through=True, progress=False)
    gate.unlink()  # no gate: the run ends on its own
    driver = start_driver(tmp_path)
    try:
        await until(lambda: calls(counts) >= 1, "no block ran")
        [folder] = [str(p) for p in tmp_path.glob("bioimage_async_map_blocks_*")]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        await until(lambda: run_ended(folder), "the workers did not end")
    finally:
        if driver.poll() is None:
            driver.kill()
    assert lock_record(out) is not None  # the dead driver's record is still there
    await run("local")  # its run ended: the record is stale and broken
    np.testing.assert_array_equal(await out.read(), 255 - data)
    assert lock_record(out) is None
    assert os.path.exists(folder)  # nobody waited for the orphaned run: its folder stays
