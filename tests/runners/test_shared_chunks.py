"""Writing into a region that starts off the output's chunk grid: local runs take turns on the
chunks that two blocks write part of (``pipeline.chunk_guard``); distributed runs refuse."""

from __future__ import annotations

import asyncio
import time

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
        async def body() -> None:
            log.append(f"{name}+")
            await asyncio.sleep(0.05)
            log.append(f"{name}-")

        await guard.write(roi, body)

    # a and b share chunk 1; c (voxels 19..27, all of chunk 2) shares nothing with them
    await asyncio.gather(
        write("a", (slice(0, 16),)), write("b", (slice(16, 19),)), write("c", (slice(19, 27),))
    )
    assert log.index("a-") < log.index("b+")
    assert log.index("c+") < log.index("a-")  # c did not wait
    assert guard.waits == 1


async def test_a_cancelled_writer_holds_its_chunks_until_its_write_ends():
    """A write that goes on after its caller was cancelled (a thread cannot be stopped) keeps
    its chunks: a neighbour writing them meanwhile would be overwritten by it."""
    guard = ChunkGuard((30,), (8,), (3,))
    entered, log = asyncio.Event(), []

    async def slow_write() -> None:
        entered.set()
        await asyncio.sleep(0.3)
        log.append("slow write ended")

    async def neighbour_write() -> None:
        log.append("neighbour wrote")

    caller = asyncio.create_task(guard.write((slice(0, 16),), slow_write))
    await entered.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    async with asyncio.timeout(5):
        await guard.write((slice(16, 30),), neighbour_write)
    assert log == ["slow write ended", "neighbour wrote"]


async def test_a_writer_cancelled_while_waiting_leaves_nothing_held():
    guard = ChunkGuard((30,), (8,), (3,))
    release = asyncio.Event()

    async def until_released() -> None:
        await release.wait()

    first = asyncio.create_task(guard.write((slice(0, 16),), until_released))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(guard.write((slice(16, 30),), until_released))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await first
    async with asyncio.timeout(5):  # nothing left held by the cancelled waiter
        await guard.write((slice(10, 30),), until_released)


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


def _cloudvolume_box(tmp_path, name, offset=(5, 9, 3), size=(80, 80, 40), prefilled=True):
    """A cloud-volume layer (whose partial-chunk writes are non-atomic read-modify-writes of
    whole chunk files), filled with a pattern (else never written, read with fill_missing),
    and a box of it off its 32x32x16 grid."""
    cloudvolume = pytest.importorskip("cloudvolume")
    from bioimage_async.sources.cloudvolume import open_cloudvolume

    info = cloudvolume.CloudVolume.create_new_info(
        num_channels=1, layer_type="image", data_type="uint16", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[0, 0, 0], volume_size=[96, 96, 48],
        chunk_size=[32, 32, 16],
    )  # fmt: skip
    layer = cloudvolume.CloudVolume(
        f"file://{tmp_path / name}", info=info, compress=False, progress=False
    )
    layer.commit_info()
    if prefilled:
        pattern = np.arange(96 * 96 * 48) % 50_000 + 1
        layer[:, :, :] = pattern.astype(np.uint16).reshape(96, 96, 48, 1)
    box = open_cloudvolume(
        f"file://{tmp_path / name}",
        offset=offset,
        size=size,
        compress=False,
        fill_missing=not prefilled,
    )  # fmt: skip  (compress=False: one kind of chunk file, what the layer already holds)
    inside = tuple(slice(o, o + s) for o, s in zip(offset, size))

    def read_box() -> np.ndarray:
        return np.asarray(layer[inside])[..., 0].transpose(2, 1, 0)

    return box, read_box


def test_cloudvolume_box_off_its_grid_takes_turns_and_loses_nothing(tmp_path):
    """cloud-volume writes part of a chunk by downloading, painting and uploading it: two such
    writes at once lose one. A local run into a box off the layer's grid must not."""
    box, read_box = _cloudvolume_box(tmp_path, "layer", prefilled=False)
    assert box.grid_offset == (13, 23, 27)  # (z, y, x)
    data = np.random.default_rng(5).integers(1, 60_000, box.shape, dtype=np.uint16)
    stats = ba.RunStats()
    ba.sync.copy(
        data, box, block_shape=(16, 32, 32), job_config=ba.RunnerConfig(in_flight=16), stats=stats
    )
    np.testing.assert_array_equal(read_box(), data)
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


def test_a_masked_write_off_the_grid_keeps_the_voxels_outside_its_mask(tmp_path):
    """The old values outside the mask were read before the block's turn: a store reads whole
    chunk files, which a neighbour was rewriting, and zeros came back and were written."""
    box, read_box = _cloudvolume_box(tmp_path, "masked")
    before = read_box()
    data = np.random.default_rng(6).integers(1, 60_000, box.shape, dtype=np.uint16)
    mask = np.zeros(box.shape, dtype=bool)
    mask[::2] = True  # every other z plane
    ba.sync.copy(
        data, box, mask=mask, block_shape=(8, 32, 32), job_config=ba.RunnerConfig(in_flight=16)
    )
    np.testing.assert_array_equal(read_box(), np.where(mask, data, before))


def test_a_timed_out_write_keeps_its_chunks_until_its_thread_ends(tmp_path, monkeypatch, request):
    """A write in a thread goes on after its block timed out: its chunks were given back at
    once, and a neighbour's read-modify-write was then overwritten by the late write. Waiting
    for a turn is not charged to the waiting block's block_timeout either."""
    from bioimage_async.sources import cloudvolume as cv_source

    previous = ba.configure().blocking_threads
    ba.configure(blocking_threads=8)  # the abandoned write holds one: the others need more
    request.addfinalizer(lambda: ba.configure(blocking_threads=previous))
    box, read_box = _cloudvolume_box(tmp_path, "timeout")
    real = cv_source.CloudVolumeSource.write_blocking
    slowed: list[tuple[slice, ...]] = []

    def first_write_of_one_block_is_slow(self, roi, value):
        if roi[0].start == 16 and roi[1].start == 32 and not slowed:
            slowed.append(roi)
            time.sleep(1.5)  # longer than block_timeout: the block is cancelled meanwhile
        real(self, roi, value)

    monkeypatch.setattr(
        cv_source.CloudVolumeSource, "write_blocking", first_write_of_one_block_is_slow
    )
    data = np.random.default_rng(8).integers(1, 60_000, box.shape, dtype=np.uint16)
    stats = ba.RunStats()
    ba.sync.copy(
        data, box, block_shape=(8, 32, 32), job_config=ba.RunnerConfig(in_flight=16),
        block_timeout=0.5, retries=2, stats=stats,
    )  # fmt: skip
    assert slowed  # the slow write happened
    time.sleep(2.0)  # the abandoned thread has ended
    np.testing.assert_array_equal(read_box(), data)
    assert stats.extra.get("retries") == 1  # the slow block only: its neighbours' waits were free
