"""A distributed run interrupted after its workers started but before it waits on them (while
the attempt is recorded in the manifest: one write, a round trip over SFTP for slurm) stops
those workers before the error reaches the caller. Real worker processes."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest

import bioimage_async as ba
from bioimage_async.runners.protocol import RunFolder

from .blockfns import counting_invert

SHAPE, BLOCK = (32, 32, 64), (16, 16, 16)  # 16 blocks


def workers_of(folder: str) -> list[psutil.Process]:
    """The live worker processes of a run folder (their command line names it)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if "bioimage_async.runners.worker" in cmdline and folder in cmdline:
            if process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def kill_leftovers(folder: str) -> None:
    for process in workers_of(folder):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def calls(counts: Path) -> int:
    return len(counts.read_text().split()) if counts.exists() else 0


@pytest.fixture
def record_attempt_stalls(monkeypatch):
    """record_attempt that never returns (a stalled manifest write); the event says it began."""
    started = asyncio.Event()

    async def stalled(self, *args, **kwargs):
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(RunFolder, "record_attempt", stalled)
    return started


@pytest.fixture
def record_attempt_fails(monkeypatch):
    async def failing(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunFolder, "record_attempt", failing)


async def make_run(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    counts = tmp_path / "calls.txt"

    def run(**kwargs):
        return ba.map_blocks(
            counting_invert(str(counts), 0.2),
            src,
            out,
            block_shape=BLOCK,
            job_type="subprocess",
            num_workers=2,
            job_config=ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05),
            **kwargs,
        )

    return data, out, counts, run


def the_run_folder(tmp_path) -> str:
    (folder,) = glob.glob(str(tmp_path / "tmp" / "bioimage_async_map_blocks_*"))
    return folder


async def test_a_cancel_while_the_attempt_is_recorded_stops_the_started_workers(
    tmp_path, record_attempt_stalls, monkeypatch
):
    data, out, counts, run = await make_run(tmp_path)
    task = asyncio.create_task(run())
    await record_attempt_stalls.wait()  # the workers are started, nothing waits on them yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    folder = the_run_folder(tmp_path)
    try:
        assert workers_of(folder) == []
        assert calls(counts) < 16
    finally:
        kill_leftovers(folder)
    monkeypatch.undo()  # the manifest writes work again: the run can be finished
    await run(resume_from=folder)
    np.testing.assert_array_equal(await out.read(), 255 - data)


async def test_a_failed_attempt_record_stops_the_started_workers(tmp_path, record_attempt_fails):
    _, _, counts, run = await make_run(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        await run()
    folder = the_run_folder(tmp_path)
    try:
        assert workers_of(folder) == []
        assert calls(counts) < 16
    finally:
        kill_leftovers(folder)
