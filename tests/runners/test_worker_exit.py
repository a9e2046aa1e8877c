"""A block whose function exits (sys.exit) or hangs past block_timeout fails alone: the worker
process goes on with its other blocks and tasks. Real worker processes."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.context import resource_options

SHAPE, BLOCK = (64, 16, 16), (8, 16, 16)  # 8 blocks; block 0 is dark, the others are not


def exits_on_dark(code: int):
    def fn(block: np.ndarray) -> np.ndarray:
        if block.max() < 10:
            sys.exit(code)
        return 255 - block

    return fn


def hangs_on_dark(gate: str):
    """Hangs on the dark block until ``gate`` is removed (a thread that cannot be stopped)."""

    def fn(block: np.ndarray) -> np.ndarray:
        while block.max() < 10 and os.path.exists(gate):
            time.sleep(0.05)
        return 255 - block

    return fn


async def make_input(tmp_path):
    data = np.full(SHAPE, 100, np.uint8)
    data[: BLOCK[0]] = 0
    src = await ba.create_source(tmp_path / "in.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    await src.write(..., data)
    out = await ba.create_source(tmp_path / "out.zarr", shape=SHAPE, dtype="uint8", chunks=BLOCK)
    return src, out


def written_blocks(out: np.ndarray) -> list[int]:
    step = BLOCK[0]
    return [i for i in range(SHAPE[0] // step) if (out[i * step : (i + 1) * step] == 155).all()]


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_a_block_that_calls_sys_exit_fails_alone(tmp_path, job_type):
    src, out = await make_input(tmp_path)
    with pytest.raises(ba.RunnerError) as caught:
        await ba.map_blocks(
            exits_on_dark(3),
            src,
            out,
            block_shape=BLOCK,
            job_type=job_type,
            num_workers=1,  # one worker process runs every task: its later tasks must run
            job_config=ba.RunnerConfig(tmp_root=str(tmp_path), poll_interval=0.05),
        )
    assert caught.value.failed_block_ids == [0]
    # a local run's compute process read as "died (exit code -9) ... Out of memory?"
    assert "SystemExit(3)" in str(caught.value)
    assert "Out of memory" not in str(caught.value)
    if job_type == "subprocess":
        assert "latency_wait" not in str(caught.value)
    assert written_blocks(await out.read()) == list(range(1, 8))


async def test_a_hung_block_is_not_retried_while_its_thread_runs_and_the_others_finish(tmp_path):
    # each retry of a timed-out block would pin one more thread of the worker's blocking pool;
    # with every thread pinned, the worker's later tasks time out on healthy blocks
    src, out = await make_input(tmp_path)
    gate = tmp_path / "gate"
    gate.write_text("")
    try:
        with pytest.raises(ba.RunnerError, match="not retried") as caught:
            await ba.map_blocks(
                hangs_on_dark(str(gate)),
                src,
                out,
                block_shape=BLOCK,
                job_type="subprocess",
                num_workers=1,
                job_config=ba.RunnerConfig(tmp_root=str(tmp_path), poll_interval=0.05),
                block_timeout=3.0,
                retries=resource_options().blocking_threads - 1,  # as many tries as threads
            )
    finally:
        gate.unlink()
    assert caught.value.failed_block_ids == [0]
    assert written_blocks(await out.read()) == list(range(1, 8))
