import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import psutil
import pytest

import bioimage_async as ba

from ..loop_lag import Heartbeat
from .helpers import GeneratedSource, SinkSource, slow_identity


def expected_checksum(shape):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return int(((sum(grids)) % 251).astype(np.uint8).sum(dtype=np.int64))


async def test_memory_stays_bounded_when_the_volume_is_8x_the_byte_budget():
    shape, chunks = (128, 512, 512), (32, 64, 64)  # 32 MiB virtual volume
    budget = 4 * 1024 * 1024  # the volume is 8x the budget
    src, sink = GeneratedSource(shape, chunks), SinkSource(shape, chunks, delay=0.001)
    stats = ba.RunStats()
    tracemalloc.start()
    try:
        await ba.copy(
            src,
            sink,
            block_shape=(32, 64, 64),
            job_config=ba.RunnerConfig(memory_budget=budget),
            stats=stats,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.checksum == expected_checksum(shape)
    assert stats.blocks_done == stats.blocks_total == 256
    block_bytes = 32 * 64 * 64
    assert stats.max_in_flight <= budget // (2 * block_bytes)
    # generating a block needs a few int64 temporaries of the block size: allow for them
    assert peak < budget + 10 * 8 * block_bytes, peak


async def test_cancelling_the_awaiting_task_stops_quickly_and_leaves_no_child(tmp_path):
    shape, chunks = (64, 64, 64), (16, 16, 16)
    src = GeneratedSource(shape, chunks)
    out = await ba.create_source(tmp_path / "o.zarr", shape=shape, dtype="uint8", chunks=chunks)
    stats = ba.RunStats()
    me = psutil.Process()
    others = {p.pid for p in me.children(recursive=True)}  # e.g. a test server of the session
    run = asyncio.create_task(
        ba.map_blocks(slow_identity, src, out, block_shape=chunks, num_workers=2, stats=stats)
    )
    # cancel once a block is written (workers may take seconds to start on a loaded machine);
    # 64 blocks of 0.5 s on 2 workers leave ~16 s before the run could finish by itself
    for _ in range(600):
        await asyncio.sleep(0.1)
        if stats.blocks_done >= 1:
            break
    assert stats.blocks_done >= 1, "no block finished within 60 s"
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert [
        p
        for p in me.children(recursive=True)
        if p.pid not in others and p.status() != psutil.STATUS_ZOMBIE
    ] == []
    grid = ba.BlockGrid(shape, chunks)
    data = await out.read()
    expected = await src.read()
    written = [b.id for b in grid if data[b.roi].any()]
    assert 0 < len(written) < grid.num_blocks  # partial, and what finished is kept
    for block_id in written:
        roi = grid.block(block_id).roi
        np.testing.assert_array_equal(data[roi], expected[roi])


def test_ctrl_c_under_sync_cancels_the_run_and_kills_workers(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent("""
        import time, numpy as np, bioimage_async as ba
        def slow(block):
            time.sleep(0.5)
            return block
        data = np.zeros((64, 64, 64), np.uint8)
        print("start", flush=True)
        try:
            ba.sync.map_blocks(slow, data, block_shape=(16, 16, 16), num_workers=2)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        # Ctrl-C as in a terminal: a shell starts background jobs (CI) with SIGINT ignored, and
        # a child inherits that disposition, so Python would never raise KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout.readline().strip() == "start"
    parent = psutil.Process(process.pid)
    for _ in range(100):
        time.sleep(0.1)
        if len(parent.children(recursive=True)) >= 2:
            break
    children = parent.children(recursive=True)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - started
    assert "interrupted" in out, (process.returncode, took, [c.name() for c in children], out, err)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


async def test_event_loop_stays_responsive_during_copy_and_heavy_downsample(tmp_path, rng):
    data = rng.integers(0, 256, size=(96, 256, 256), dtype=np.uint8)
    src = await ba.create_source(
        tmp_path / "i.zarr", shape=data.shape, dtype="uint8", chunks=(32, 64, 64)
    )
    await src.write(..., data)
    out = await ba.create_source(
        tmp_path / "o.zarr", shape=data.shape, dtype="uint8", chunks=(32, 64, 64)
    )
    small = await ba.create_source(
        tmp_path / "s.zarr", shape=(48, 128, 128), dtype="uint8", chunks=(16, 64, 64)
    )
    async with Heartbeat() as copy_beat:
        await ba.copy(src, out, num_workers=2)
    async with Heartbeat() as downsample_beat:
        await ba.downsample(src, 2, small, order=1, anti_aliasing=True, num_workers=2)
    # a responsiveness bound on library code (not a throughput threshold), net of waits for a core
    assert copy_beat.worst < 0.05, (copy_beat.worst, copy_beat.worst_raw)
    assert downsample_beat.worst < 0.05, (downsample_beat.worst, downsample_beat.worst_raw)


class CancelsOneRead(ba.Source):
    """A user's source whose backend request for one region ends cancelled (its own executor
    future), while the run itself is not cancelled."""

    def __init__(self, data: np.ndarray, cancelled_start: tuple[int, ...]) -> None:
        self.data = data
        self.cancelled_start = cancelled_start

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def _read_blocking(self, roi):
        import concurrent.futures

        if tuple(s.start for s in roi) == self.cancelled_start:
            raise concurrent.futures.CancelledError("backend request cancelled")
        return self.data[roi].copy()

    async def _read(self, roi):
        return await asyncio.get_running_loop().run_in_executor(None, self._read_blocking, roi)


@pytest.mark.parametrize("in_flight", [None, 1])
async def test_a_cancellation_inside_one_block_fails_that_block_and_no_other(in_flight):
    # it used to end its worker coroutine quietly: the block, and with in_flight=1 every block
    # after it, was left unwritten while the copy returned normally
    data = np.full((16, 32, 32), 5, np.uint8)
    grid = ba.BlockGrid(data.shape, (8, 16, 16))
    source = CancelsOneRead(data, (0, 16, 0))
    cancelled_id = next(b for b in range(grid.num_blocks) if grid.block(b).begin == (0, 16, 0))
    with pytest.raises(ba.RunnerError) as caught:
        await ba.copy(
            source, block_shape=(8, 16, 16), job_config=ba.RunnerConfig(in_flight=in_flight)
        )
    assert caught.value.failed_block_ids == [cancelled_id]
    assert "BlockCancelledError" in str(caught.value) or "was cancelled" in str(caught.value)
