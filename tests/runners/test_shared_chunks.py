"""Writing into a region that starts off the output's chunk grid: local runs take turns on the
chunks that two blocks write part of (``pipeline.chunk_guard``); distributed runs refuse."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import bioimage_async as ba
from bioimage_async.blocking.grid import BlockGrid
from bioimage_async.blocking.safety import plan_writes
from bioimage_async.errors import UnsafeBlockShapeError
from bioimage_async.pipeline.chunk_guard import ChunkGuard, shared_chunks


def test_shared_chunks_are_the_ones_a_block_covers_only_part_of():
    # one axis, chunk borders at 3, 11, 19, ... (offset 3, grain 8), volume of 30
    roi = (slice(0, 16),)
    # chunk -1 ([-5, 3) -> [0, 3) inside the volume) is covered; chunk 0 [3, 11) too;
    # chunk 1 [11, 19) only in part
    assert shared_chunks(roi, (30,), (8,), (3,)) == {(1,)}
    assert shared_chunks((slice(16, 30),), (30,), (8,), (3,)) == {(1,)}
    assert shared_chunks((slice(3, 19),), (30,), (8,), (3,)) == frozenset()
    # two axes: chunks partial on either axis, over the other axis' full range
    got = shared_chunks((slice(0, 16), slice(3, 11)), (30, 30), (8, 8), (3, 3))
    assert got == {(1, 0)}
    got = shared_chunks((slice(0, 16), slice(0, 12)), (30, 30), (8, 8), (3, 3))
    assert got == {(1, -1), (1, 0), (1, 1), (-1, 1), (0, 1)}


async def test_blocks_sharing_a_chunk_write_one_at_a_time_and_others_at_once():
    guard = ChunkGuard((30,), (8,), (3,))
    log: list[str] = []

    async def write(name: str, roi: tuple[slice, ...]) -> None:
        async with guard.holding(roi):
            log.append(f"{name}+")
            await asyncio.sleep(0.05)
            log.append(f"{name}-")

    # a and b share chunk 1; c (voxels 19..27, all of chunk 2) shares nothing with them
    await asyncio.gather(
        write("a", (slice(0, 16),)), write("b", (slice(16, 19),)), write("c", (slice(19, 27),))
    )
    assert log.index("a-") < log.index("b+")
    assert log.index("c+") < log.index("a-")  # c did not wait
    assert guard.waits == 1


async def test_a_cancelled_holder_gives_its_chunks_back():
    guard = ChunkGuard((30,), (8,), (3,))
    entered = asyncio.Event()

    async def hold_for_ever() -> None:
        async with guard.holding((slice(0, 16),)):
            entered.set()
            await asyncio.sleep(3600)

    holder = asyncio.create_task(hold_for_ever())
    await entered.wait()
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with asyncio.timeout(5):
        async with guard.holding((slice(16, 30),)):
            pass


def test_only_a_one_writer_plan_takes_turns_others_are_refused():
    grid = BlockGrid((100, 100), (32, 32))
    plan = plan_writes(grid, (16, 16), None, (11, 11), concurrent=True, one_writer=True)
    assert plan.guarded == ((16, 16), (11, 11)) and not plan.grouped
    with pytest.raises(UnsafeBlockShapeError, match="does not start on a chunk boundary"):
        plan_writes(grid, (16, 16), None, (11, 11), concurrent=True)


@pytest.fixture
def framed_output(tmp_path):
    """A zarr array full of a pattern, and a view of it that starts off its 16^3 chunk grid."""

    def make(name: str, shape=(96, 100, 104), region=np.s_[5:85, 7:99, 3:95]):
        out = ba.sync.create_source(
            str(tmp_path / f"{name}.zarr"), shape=shape, dtype="uint16", chunks=(16, 16, 16)
        )
        pattern = (np.arange(np.prod(shape)) % 60_000 + 1).astype(np.uint16).reshape(shape)
        ba.sync.copy(pattern, out)
        return out, out.view(region), pattern, region

    return make


@pytest.mark.parametrize("block_shape", [None, (32, 32, 32), (16, 48, 32), (20, 30, 25)])
def test_a_copy_into_an_off_grid_region_is_exact_and_keeps_the_rest(framed_output, block_shape):
    out, view, pattern, region = framed_output("copy")
    assert view.grid_offset == (11, 9, 13)
    data = np.random.default_rng(3).integers(1, 60_000, view.shape, dtype=np.uint16)
    ba.sync.copy(data, view, block_shape=block_shape, job_config=ba.RunnerConfig(in_flight=16))
    expected = pattern.copy()
    expected[region] = data
    np.testing.assert_array_equal(out[...], expected)


def test_downsample_and_masked_map_blocks_into_an_off_grid_region(framed_output):
    out, view, pattern, region = framed_output("ops")
    big = np.random.default_rng(4).integers(0, 60_000, (160, 184, 184), dtype=np.uint16)
    ba.sync.downsample(big, 2, view, order=1, block_shape=(16, 16, 16))
    expected = pattern.copy()
    expected[region] = ba.sync.downsample(big, 2, order=1)
    np.testing.assert_array_equal(out[...], expected)

    mask = np.zeros(view.shape, dtype=bool)
    mask[10:50, 20:70, 5:60] = True
    ba.sync.map_blocks(
        np.negative,
        expected[region].astype(np.int32),
        view,
        mask=mask,
        block_shape=(16, 32, 16),
        casting="unsafe",
    )
    inside = expected[region]
    inside[mask] = (-inside.astype(np.int32)[mask]).astype(np.uint16)
    expected[region] = inside
    np.testing.assert_array_equal(out[...], expected)


def test_cloudvolume_box_off_its_grid_takes_turns_and_loses_nothing(tmp_path):
    """cloud-volume writes part of a chunk by downloading, painting and uploading it: two such
    writes at once lose one. A local run into a box off the layer's grid must not."""
    cloudvolume = pytest.importorskip("cloudvolume")
    from bioimage_async.sources.cloudvolume import open_cloudvolume

    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint16", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], volume_size=[96, 96, 48],
        chunk_size=[32, 32, 16],
    )  # fmt: skip
    layer = cloudvolume.CloudVolume(
        f"file://{tmp_path / 'layer'}", info=info, compress=False, progress=False
    )
    layer.commit_info()
    box = open_cloudvolume(
        f"file://{tmp_path / 'layer'}", offset=(5, 9, 3), size=(80, 80, 40), fill_missing=True
    )
    assert box.grid_offset == (13, 23, 27)  # (z, y, x)
    data = np.random.default_rng(5).integers(1, 60_000, box.shape, dtype=np.uint16)
    stats = ba.RunStats()
    ba.sync.copy(
        data, box, block_shape=(16, 32, 32), job_config=ba.RunnerConfig(in_flight=16), stats=stats
    )
    written = np.asarray(layer[5:85, 9:89, 3:43])[..., 0].transpose(2, 1, 0)
    np.testing.assert_array_equal(written, data)
    assert stats.extra["shared_chunk_waits"] > 0  # neighbours did meet on shared chunks


def test_distributed_runs_still_refuse_an_off_grid_region(framed_output, tmp_path):
    _, view, _, _ = framed_output("distributed")
    data = ba.sync.create_source(
        str(tmp_path / "in.zarr"), shape=view.shape, dtype="uint16", chunks=(32, 32, 32)
    )
    with pytest.raises(UnsafeBlockShapeError, match="run it locally"):
        ba.sync.copy(
            data, view, block_shape=(32, 32, 32), job_type="subprocess",
            job_config=ba.RunnerConfig(tmp_root=str(tmp_path)),
        )  # fmt: skip
