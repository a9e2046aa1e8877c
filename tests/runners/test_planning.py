"""Planning costs O(blocks selected), never O(grid), and never stalls the event loop."""

import tracemalloc

import numpy as np
import pytest

import bioimage_async as ba

from ..loop_lag import Heartbeat
from ..pipeline.helpers import GeneratedSource


@pytest.mark.parametrize("job_type", ["local", "subprocess"])
async def test_block_ids_on_a_million_cubed_volume_run_only_those_blocks(tmp_path, job_type):
    shape, chunks = (10**6,) * 3, (64, 64, 64)
    grid = ba.BlockGrid(shape, chunks)
    assert grid.num_blocks > 3.8e12
    ids = [0, 5, 123456789]
    out = await ba.create_source(tmp_path / "out.zarr", shape=shape, dtype="uint8", chunks=chunks)
    if job_type == "local":
        src = GeneratedSource(shape, chunks)
    else:  # workers reopen the input from its spec: a (virtual, all fill value) zarr
        src = await ba.create_source(
            tmp_path / "in.zarr", shape=shape, dtype="uint8", chunks=chunks, fill_value=7
        )
    config = ba.RunnerConfig(tmp_root=str(tmp_path / "tmp"), poll_interval=0.05)
    tracemalloc.start()
    try:
        async with Heartbeat() as beat:
            await ba.copy(
                src,
                out,
                block_shape=chunks,
                block_ids=ids,
                num_workers=2,
                job_type=job_type,
                job_config=config,
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # one flag per block of the grid would be terabytes
    assert beat.worst < 0.05, beat.worst
    for block_id in ids:
        roi = grid.block(block_id).roi
        np.testing.assert_array_equal(await out.read(roi), await src.read(roi))
    assert not (await out.read(grid.block(1).roi)).any()  # not selected: never written


async def test_block_ids_into_a_huge_sharded_output_group_only_the_selected_blocks(tmp_path):
    shape = (65536,) * 3
    out = await ba.create_source(
        tmp_path / "s.zarr",
        shape=shape,
        dtype="uint8",
        chunks=(32, 32, 32),
        shards=(256, 256, 256),
        format="zarr3",
    )
    src = GeneratedSource(shape, (32, 32, 32))
    async with Heartbeat() as beat:
        await ba.copy(src, out, block_shape=(32, 32, 32), block_ids=[0, 5], num_workers=2)
    assert beat.worst < 0.05, beat.worst
    roi = ba.BlockGrid(shape, (32, 32, 32)).block(5).roi
    np.testing.assert_array_equal(await out.read(roi), await src.read(roi))


def test_write_plan_groups_of_selected_ids_touch_only_their_shards():
    from bioimage_async.blocking.safety import plan_writes

    grid = ba.BlockGrid((65536,) * 3, (32, 32, 32))
    plan = plan_writes(grid, (32, 32, 32), (256, 256, 256), (0, 0, 0), concurrent=True)
    far = grid.block_id((2047, 2047, 2047))
    assert list(plan.groups([0, 5, far, 1])) == [[0, 1, 5], [far]]
