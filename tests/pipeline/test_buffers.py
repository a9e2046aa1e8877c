"""Input regions of the library's own kernels are read into buffers reused from block to block."""

from __future__ import annotations

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.blocking.grid import BlockGrid
from bioimage_async.kernels.resample import Resampling
from bioimage_async.ops.downsample import ResampleKernel
from bioimage_async.pipeline import buffers as buffers_module
from bioimage_async.pipeline.buffers import BufferPool
from bioimage_async.pipeline.execute import execute_block
from bioimage_async.pipeline.stats import RunStats
from bioimage_async.pipeline.task import BlockKernel, BlockTask

SHAPE = (32, 96, 80)


def test_a_buffer_given_back_is_handed_out_again_for_any_shape_that_fits():
    pool = BufferPool(keep=2)
    a, buffer = pool.take((4, 5, 6), np.dtype("uint16"))
    assert a.shape == (4, 5, 6) and a.dtype == np.uint16 and a.flags.c_contiguous
    pool.give(buffer)
    b, again = pool.take((3, 5, 6), np.dtype("uint8"))  # smaller: the same memory
    assert again is buffer and np.shares_memory(a, b)
    c, other = pool.take((10, 10, 10), np.dtype("float32"))  # larger: new memory
    assert other is not buffer and pool.allocated == 2
    for held in (again, other, np.empty(8, np.uint8)):
        pool.give(held)
    assert len(pool._idle) == 2 and all(b.nbytes >= 240 for b in pool._idle)  # keep=2: largest
    small = BufferPool(keep=4, max_idle_bytes=1000)
    _, big = small.take((2000,), np.dtype("uint8"))
    _, little = small.take((100,), np.dtype("uint8"))
    small.give(little)
    small.give(big)  # over the byte budget: the big one is freed, not kept
    assert [b.nbytes for b in small._idle] == [100]


@pytest.fixture
async def zarr_input(tmp_path):
    data = np.random.default_rng(2).integers(0, 4000, size=SHAPE).astype(np.uint16)
    src = await ba.create_source(
        tmp_path / "in.zarr", shape=SHAPE, dtype="uint16", chunks=(16,) * 3
    )
    await src.write(..., data)
    return src, data


async def test_a_smooth_downsample_reuses_its_input_buffers_and_equals_the_whole_array(
    zarr_input, monkeypatch
):
    src, data = zarr_input
    expected = await ba.downsample(data, 2, order=1, anti_aliasing=True)  # in memory, whole
    pools: list[BufferPool] = []

    class Recording(BufferPool):
        def __init__(self, *args: int) -> None:
            super().__init__(*args)
            pools.append(self)

    monkeypatch.setattr(buffers_module, "BufferPool", Recording)
    stats = ba.RunStats()
    result = await ba.downsample(
        src, 2, order=1, anti_aliasing=True, block_shape=(8, 8, 8), num_workers=2, stats=stats
    )
    np.testing.assert_array_equal(result, expected)
    (pool,) = pools
    assert stats.blocks_done == 2 * 6 * 5
    assert 0 < pool.allocated <= pool.keep < stats.blocks_done  # one per block in flight


async def test_kernels_that_may_keep_their_input_get_arrays_of_their_own(zarr_input):
    """A kernel without ``input_is_scratch`` (map_blocks' user functions) never reads into a
    pooled buffer: it may keep its input after returning."""
    src, data = zarr_input
    kept: list[np.ndarray] = []

    class Keeping(BlockKernel):
        compute_cost = "light"

        def compute(self, block, data):
            kept.append(data)
            return data

    out = ba.as_source(np.zeros(SHAPE, np.uint16))
    task = BlockTask("k", src, out, BlockGrid(SHAPE, (16, 32, 16)), Keeping())
    pool = BufferPool(keep=4)
    for block_id in range(task.grid.num_blocks):
        assert await execute_block(task, block_id, None, RunStats(), pool)
    assert pool.allocated == 0 and not pool._idle
    for block_id, block in enumerate(kept):
        np.testing.assert_array_equal(block, data[task.grid.block(block_id).roi])


async def test_a_failed_block_drops_its_buffer(zarr_input):
    src, _ = zarr_input
    out = await ba.create_source(
        src.location.replace("in.zarr", "out.zarr"),
        shape=(16, 48, 40),
        dtype="uint16",
        chunks=(8, 8, 8),
    )
    resampling = Resampling(SHAPE, (16, 48, 40), 1, True, "<u2")
    task = BlockTask("d", src, out, BlockGrid((16, 48, 40), (8, 8, 8)), ResampleKernel(resampling))
    pool = BufferPool(keep=4)

    async def failing(block_id, data, mask):
        raise RuntimeError("kernel failed")

    with pytest.raises(RuntimeError, match="kernel failed"):
        await execute_block(task, 0, failing, RunStats(), pool)
    assert not pool._idle  # a thread could still be reading it: never handed out again

    async def working(block_id, data, mask):
        return np.zeros(task.grid.block(block_id).shape, np.uint16), 0.0

    assert await execute_block(task, 0, working, RunStats(), pool)
    assert len(pool._idle) == 1


async def test_a_result_that_is_a_view_of_its_input_keeps_the_buffer_until_written(zarr_input):
    src, data = zarr_input
    pool = BufferPool(keep=4)
    idle_during_writes: list[int] = []

    class Recording(type(src)):  # the real output, watched while it writes
        async def _write(self, roi, value):
            idle_during_writes.append(len(pool._idle))
            await super()._write(roi, value)

    out = await ba.create_source(
        src.location.replace("in.zarr", "view.zarr"), shape=SHAPE, dtype="uint16", chunks=(16,) * 3
    )
    out.__class__ = Recording

    class Identity(BlockKernel):
        compute_cost = "light"
        input_is_scratch = True  # but returns a view of its input

        def compute(self, block, data):
            return data

    task = BlockTask("v", src, out, BlockGrid(SHAPE, (16, 32, 16)), Identity())
    for block_id in range(task.grid.num_blocks):
        assert await execute_block(task, block_id, None, RunStats(), pool)
    assert idle_during_writes == [0] * task.grid.num_blocks  # never handed out mid-write
    assert pool.allocated == 1  # and reused after each write
    np.testing.assert_array_equal(await out.read(), data)


async def test_read_roi_into_equals_read_roi_for_tensorstore_and_other_sources(zarr_input):
    src, data = zarr_input
    for source in (src, ba.as_source(data)):
        for roi in [
            (slice(0, 32), slice(0, 96), slice(0, 80)),
            (slice(3, 20), slice(17, 60), slice(5, 6)),
            (slice(4, 4), slice(0, 10), slice(0, 10)),  # empty
        ]:
            out = np.full(tuple(s.stop - s.start for s in roi), 7, np.uint16)
            await source.read_roi_into(roi, out)
            np.testing.assert_array_equal(out, await source.read_roi(roi))
            np.testing.assert_array_equal(out, data[roi])
